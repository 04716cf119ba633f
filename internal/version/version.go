// Package version reports what the running binary is: the release version
// set at build time (-ldflags "-X github.com/sendid/sendid/braze.Version=v1.2.3",
// the variable the Braze client's User-Agent also reports), else the module
// version or VCS revision Go recorded, and the Go version it was built with.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/sendid/sendid/braze"
)

// String is the release version, "dev" for an untagged local build
// (with the VCS revision when Go recorded one).
func String() string {
	v := braze.Version
	bi, ok := debug.ReadBuildInfo()
	if v != "dev" || !ok {
		return v
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return v
}

// Go is the Go version the binary was built with.
func Go() string { return runtime.Version() }
