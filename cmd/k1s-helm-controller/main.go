// Command k1s-helm-controller is the binary of the helm-controller add-on
// image: it reconciles helm.k1s.io HelmCharts into Helm releases (package
// internal/helmctl). k1s deploys it from manifests/helm-controller.yaml;
// it is its own program so that Helm stays out of the k1s binary.
//
//	k1s-helm-controller [-kubeconfig FILE] [-cache-dir DIR] [-timeout 5m] [-debug]
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/k1s-io/k1s/internal/helmctl"
)

func main() {
	var cfg helmctl.Config
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config)")
	flag.StringVar(&cfg.CacheDir, "cache-dir", "/tmp", "writable folder for Helm's repository and discovery caches")
	flag.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "longest one install, upgrade or uninstall may take")
	flag.BoolVar(&cfg.Debug, "debug", false, "log Helm's own messages")
	flag.Parse()
	if flag.NArg() != 0 {
		log.Fatalf("unexpected arguments %q (see -help)", flag.Args())
	}
	log.SetFlags(log.LstdFlags | log.LUTC)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := helmctl.Run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}
