// Command k1s-local-path is the binary of the local-path helper image. The
// server's local-path provisioner (internal/localpath) runs it in a
// short-lived Pod on a volume's node, with the storage root mounted at the
// same path:
//
//	k1s-local-path create ROOT NAME SIZE   # SIZE in bytes; refused if the disk has less free
//	k1s-local-path delete ROOT NAME
//
// A failure is written to /dev/termination-log, where the provisioner
// reads it for the claim's event.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/k1s-io/k1s/internal/localpath/volumedir"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		msg := err.Error()
		_ = os.WriteFile("/dev/termination-log", []byte(msg), 0o644)
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 4 && args[0] == "create":
		size, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("size %q: want a number of bytes", args[3])
		}
		return volumedir.Create(args[1], args[2], size)
	case len(args) == 3 && args[0] == "delete":
		return volumedir.Delete(args[1], args[2])
	}
	return fmt.Errorf("usage: k1s-local-path create ROOT NAME SIZE | delete ROOT NAME (got %q)", args)
}
