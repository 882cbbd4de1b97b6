package containerd

import (
	"context"
	"fmt"
	"os"

	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"
)

// CtrMain runs ctr against k1s's containerd and the Kubernetes namespace
// unless told otherwise.
func CtrMain(args []string) int {
	if os.Getenv("CONTAINERD_ADDRESS") == "" {
		os.Setenv("CONTAINERD_ADDRESS", DefaultSocket)
	}
	if os.Getenv("CONTAINERD_NAMESPACE") == "" {
		os.Setenv("CONTAINERD_NAMESPACE", Namespace)
	}
	if err := ctrapp.New().Run(context.Background(), append([]string{"ctr"}, args...)); err != nil {
		fmt.Fprintln(os.Stderr, "ctr:", err)
		return 1
	}
	return 0
}
