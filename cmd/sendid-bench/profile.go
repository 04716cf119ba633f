package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

// profileSeconds is how long -profile samples.
const profileSeconds = 10

// profileDuring starts, when -profile names a file and -profile-row is
// row, a CPU profile of the worker w (its pprof endpoint) and one of the
// bench process (the embedded NATS server, the simulator and the
// publisher), both after one second and for profileSeconds. The returned
// function waits for both to be written.
func (b *bench) profileDuring(w *worker, row string) (wait func()) {
	if b.profile == "" || b.profileRow != row {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(time.Second)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", w.http, profileSeconds))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: worker profile:", err)
			return
		}
		defer resp.Body.Close()
		if err := writeFile(b.profile, resp.Body); err != nil {
			fmt.Fprintln(os.Stderr, "bench: worker profile:", err)
		}
	})
	wg.Go(func() {
		time.Sleep(time.Second)
		f, err := os.Create(b.profile + ".server")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: server profile:", err)
			return
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench: server profile:", err)
			return
		}
		time.Sleep(profileSeconds * time.Second)
		pprof.StopCPUProfile()
	})
	return wg.Wait
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
