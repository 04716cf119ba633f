package deployments_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTrackedBytes bounds a tracked file: compiled binaries and data dumps
// do not belong in the repository (a 10.8 MB binary once slipped in).
const maxTrackedBytes = 1 << 20

// TestNoLargeTrackedFiles fails when git tracks a file over 1 MB that is
// not a fuzz corpus entry (testdata/fuzz/...).
func TestNoLargeTrackedFiles(t *testing.T) {
	t.Parallel()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	root, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	dir := strings.TrimSpace(string(root))
	out, err := exec.Command(git, "-C", dir, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0})
	if len(files) < 10 {
		t.Fatalf("git ls-files listed %d files: not this repository?", len(files))
	}
	for _, f := range files {
		name := string(f)
		if isFuzzCorpus(name) {
			continue
		}
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			continue // deleted in the working tree
		}
		if st.Size() > maxTrackedBytes {
			t.Errorf("%s is tracked and %d bytes (limit %d): build outputs and data stay out of git", name, st.Size(), maxTrackedBytes)
		}
	}
}

func isFuzzCorpus(path string) bool {
	return strings.HasPrefix(path, "testdata/fuzz/") || strings.Contains(path, "/testdata/fuzz/")
}

func TestIsFuzzCorpus(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"queue/testdata/fuzz/FuzzDecodeJob/0a1b": true,
		"testdata/fuzz/FuzzX/1":                  true,
		"sendid":                                 false,
		"cmd/sendid-worker/sendid-worker":        false,
		"queue/testdata/big.json":                false,
	} {
		if got := isFuzzCorpus(path); got != want {
			t.Errorf("isFuzzCorpus(%q) = %v", path, got)
		}
	}
}
