// Command pause is the process of k1s's pod sandbox image: it holds the
// pod's namespaces open, reaps orphaned children (it may be PID 1 of a pod
// that shares its process namespace) and exits on SIGINT or SIGTERM.
// `make` builds it statically and k1s packs it into the sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
