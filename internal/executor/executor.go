// Package executor is the one seam through which k1s starts upstream
// Kubernetes components. Callers hand over a context and the component's
// own command-line arguments; nothing else in k1s touches the components'
// cobra commands, option structs or flag parsing (package kubectl runs the
// kubectl tool's command, which is not a component).
package executor

import (
	"context"
	"net/http"
)

// Front wraps the apiserver's handler: k1s serves a few endpoints of its own
// (the agent join) on the apiserver's port, ahead of its authentication, and
// hands every other request to the apiserver. Nil means no wrapping.
type Front func(apiserver http.Handler) http.Handler

// Executor starts upstream components. Each method parses args, returns an
// error at once if they are invalid, and otherwise runs the component until
// ctx is cancelled (then it returns nil) or the component fails.
type Executor interface {
	APIServer(ctx context.Context, args []string, front Front) error
	Scheduler(ctx context.Context, args []string) error
	ControllerManager(ctx context.Context, args []string) error
	Kubelet(ctx context.Context, args []string) error
	KubeProxy(ctx context.Context, args []string) error
}

// Embedded runs the components as goroutines of this process.
func Embedded() Executor { return embedded{} }
