// Command k1s is a lightweight Kubernetes distribution in one executable.
// See docs/architecture.md for how the pieces fit together.
package main

import (
	"os"

	"github.com/k1s-io/k1s/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
