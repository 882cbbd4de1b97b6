// Command k1s-launcher is the start of the k1s release executable: it
// unpacks the compressed k1s appended to it into the data dir once per
// version and execs it (see internal/selfextract). `make release` builds
// it and appends the payload with cmd/k1s-pack.
package main

import (
	"os"

	"github.com/k1s-io/k1s/internal/selfextract"
)

func main() { os.Exit(selfextract.Main()) }
