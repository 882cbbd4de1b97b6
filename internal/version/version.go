// Package version reports the k1s version and the version of the Kubernetes
// components built into the binary. Both are stamped in by the Makefile.
package version

import (
	"fmt"

	kubeversion "k8s.io/component-base/version"
)

// Version is the k1s release, set with -ldflags -X at build time.
var Version = "v0.0.0-dev"

// Kubernetes is the version the embedded Kubernetes components report.
func Kubernetes() string {
	return kubeversion.Get().GitVersion
}

// String is what `k1s --version` prints.
func String() string {
	return fmt.Sprintf("k1s version %s\nkubernetes %s", Version, Kubernetes())
}
