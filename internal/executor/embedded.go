package executor

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/flagz"
	encryptionconfigcontroller "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	controllermanageroptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

func init() {
	// Several components share this process and its logging setup.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

type embedded struct{}

func parse(component string, sets cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, name := range sets.Order {
		fs.AddFlagSet(sets.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s arguments: %w", component, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s arguments: unexpected %q", component, fs.Args())
	}
	return nil
}

// encryptionConfigPoll is how often the apiserver checks its encryption
// configuration for changes (a hash of a small file).
const encryptionConfigPoll = 5 * time.Second

func (embedded) APIServer(ctx context.Context, args []string, front Front) error {
	s := apiserveroptions.NewServerRunOptions()
	sets := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: sets}
	if err := parse("kube-apiserver", sets, args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// The apiserver's loopback clients would log warnings about themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	// `k1s secrets-encrypt rotate-keys` waits for the apiserver to re-read
	// its encryption configuration; upstream checks the file once a minute.
	encryptionconfigcontroller.EncryptionConfigFileChangePollDuration = encryptionConfigPoll
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	return runAPIServer(ctx, completed, front)
}

// runAPIServer is upstream's app.Run with one addition: the outermost
// (aggregator) handler chain is wrapped by front.
func runAPIServer(ctx context.Context, opts apiserveroptions.CompletedOptions, front Front) error {
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	config, err := apiserver.NewConfig(opts)
	if err != nil {
		return err
	}
	if front != nil {
		gc := config.Aggregator.GenericConfig
		build := gc.BuildHandlerChainFunc
		gc.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return front(build(h, c))
		}
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := apiserver.CreateServerChain(completed)
	if err != nil {
		return err
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

func (embedded) Scheduler(ctx context.Context, args []string) error {
	opts := scheduleroptions.NewOptions()
	if err := parse("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-scheduler")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	cc, sched, err := scheduler.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return scheduler.Run(ctx, cc, sched)
}

func (embedded) ControllerManager(ctx context.Context, args []string) error {
	s, err := controllermanageroptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := controllermanager.KnownControllers(), controllermanager.ControllersDisabledByDefault(), controllermanager.ControllerAliases()
	sets := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &sets
	if err := parse("kube-controller-manager", sets, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return controllermanager.Run(ctx, c.Complete())
}
