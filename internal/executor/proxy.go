package executor

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
)

func (embedded) KubeProxy(ctx context.Context, args []string) error {
	opts := proxy.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	opts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-proxy arguments: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kube-proxy arguments: unexpected %q", fs.Args())
	}
	if err := opts.Complete(fs); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	// Upstream's Run does not return when its context ends (its informers
	// use NeverStop); k1s stops waiting for it and the process exit ends it.
	done := make(chan error, 1)
	go func() { done <- opts.Run(ctx) }()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("kube-proxy exited")
		}
		return err
	case <-ctx.Done():
		return nil
	}
}
