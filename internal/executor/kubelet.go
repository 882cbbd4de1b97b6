package executor

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfigvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
)

// Kubelet runs the kubelet from the KubeletConfiguration file named by
// --config in args; the other args (kubelet flags or configuration flags)
// override the file, as they do for the upstream command.
func (embedded) Kubelet(ctx context.Context, args []string) error {
	// First pass: find --config among the kubelet flags.
	first := kubeletoptions.NewKubeletFlags()
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	first.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kubelet arguments: %w", err)
	}
	if first.KubeletConfigFile == "" {
		return fmt.Errorf("kubelet arguments: --config is required")
	}
	path, err := filepath.Abs(first.KubeletConfigFile)
	if err != nil {
		return err
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, path)
	if err != nil {
		return err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return fmt.Errorf("kubelet config %s: %w", path, err)
	}
	if kc.EvictionHard == nil {
		kc.EvictionHard = maps.Clone(eviction.DefaultEvictionHard)
	}
	// Second pass: every flag, with configuration flags landing on kc.
	flags := kubeletoptions.NewKubeletFlags()
	fs = pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	flags.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kubelet arguments: %w", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return err
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
		return err
	}
	if err := kubeletconfigvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return err
	}
	s := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	deps, err := kubelet.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return err
	}
	return kubelet.Run(ctx, s, deps, utilfeature.DefaultFeatureGate)
}
