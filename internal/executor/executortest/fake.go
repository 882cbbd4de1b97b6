// Package executortest is a fake executor.Executor for unit tests of the
// packages that assemble k1s (server, node, agent): it starts no
// Kubernetes component, records the order components start and stop in,
// serves the health endpoints k1s's readiness gates ask for, and fails a
// component on request.
package executortest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/k1s-io/k1s/internal/executor"
)

// Fake records what was started and stopped, in order.
type Fake struct {
	// Fail makes a component return this error once it is started (after
	// its health endpoint, if any, began answering).
	Fail map[string]error
	// Hold delays a component's Fail until the channel is closed, so a
	// test can make two components fail together.
	Hold map[string]<-chan struct{}

	mu     sync.Mutex
	events []string
}

var _ executor.Executor = (*Fake)(nil)

// Events are "start NAME" and "stop NAME" in the order they happened.
func (f *Fake) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// Record adds an event; tests use it for fake steps of their own.
func (f *Fake) Record(e string) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func (f *Fake) APIServer(ctx context.Context, args []string, _ executor.Front) error {
	return f.run(ctx, "kube-apiserver", args)
}
func (f *Fake) Scheduler(ctx context.Context, args []string) error {
	return f.run(ctx, "kube-scheduler", args)
}
func (f *Fake) ControllerManager(ctx context.Context, args []string) error {
	return f.run(ctx, "kube-controller-manager", args)
}
func (f *Fake) Kubelet(ctx context.Context, args []string) error {
	return f.run(ctx, "kubelet", args)
}
func (f *Fake) KubeProxy(ctx context.Context, args []string) error {
	return f.run(ctx, "kube-proxy", args)
}

// run serves 200 "ok" on the component's --secure-port (on loopback, with
// its --tls-cert-file when given, so a probe that checks the certificate
// passes), then blocks until ctx ends or the component is told to fail.
func (f *Fake) run(ctx context.Context, name string, args []string) error {
	f.Record("start " + name)
	defer f.Record("stop " + name)
	flags := parse(args)
	if port := flags["secure-port"]; port != "" {
		srv, err := serve(port, flags["tls-cert-file"], flags["tls-private-key-file"])
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if hold := f.Hold[name]; hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil
		}
	}
	if err := f.Fail[name]; err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func serve(port, certFile, keyFile string) (*httptest.Server, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Listener.Close()
	srv.Listener = l
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			l.Close()
			return nil, err
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	srv.StartTLS()
	return srv, nil
}

// parse reads --key=value arguments.
func parse(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
			m[k] = v
		}
	}
	return m
}
