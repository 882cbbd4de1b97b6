// Package kubectl runs the real upstream kubectl inside the k1s binary, as
// `k1s kubectl …` or through a symlink named kubectl.
package kubectl

import (
	"os"
	"strings"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	"github.com/k1s-io/k1s/internal/config"
)

// Main runs kubectl with args (without the program name) and returns the exit code.
func Main(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		// Like a fresh k1s host expects: talk to the local cluster as admin.
		if _, err := os.Stat(config.DefaultKubeconfig); err == nil {
			os.Setenv("KUBECONFIG", config.DefaultKubeconfig)
		}
	}
	// kubectl reads os.Args itself (plugins, flag parsing).
	os.Args = append([]string{"kubectl"}, args...)
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(cmd); err != nil {
		util.CheckErr(err) // prints the error the way kubectl does and exits non-zero
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
