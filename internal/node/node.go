// Package node assembles a Kubernetes node inside k1s: the start-up steps
// that run after (or, on an agent, without) the control plane. Today that is
// containerd and the air-gap image import; the CNI, kubelet and kube-proxy
// steps follow in this order.
package node

import (
	"context"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/pipeline"
)

// SandboxImage is the pod sandbox ("pause") image containerd uses.
const SandboxImage = "docker.io/k1s-io/pause:1.0"

const containerdReadyTimeout = 60 * time.Second

// ContainerdConfig derives containerd's settings from the k1s config and
// from what this host allows.
func ContainerdConfig(cfg *config.Server) containerd.Config {
	return containerd.Config{
		Root:                cfg.ContainerdRoot(),
		State:               cfg.ContainerdState(),
		Socket:              cfg.ContainerdSocket(),
		ConfigDir:           cfg.ContainerdConfigDir(),
		SandboxImage:        SandboxImage,
		CNIBinDir:           filepath.Join(cfg.AgentDir(), "cni", "bin"),
		CNIConfDir:          filepath.Join(cfg.AgentDir(), "etc", "cni", "net.d"),
		RegistryConfigDir:   filepath.Join(cfg.AgentDir(), "etc", "containerd", "certs.d"),
		RestrictOOMScoreAdj: !containerd.HasCapSysResource(),
	}
}

// Steps are the node's start-up steps.
func Steps(cfg *config.Server, sup *pipeline.Supervisor, log logrus.FieldLogger) []pipeline.Step {
	cc := ContainerdConfig(cfg)
	return []pipeline.Step{
		{Name: "containerd", Run: func(ctx context.Context) error {
			ready := make(chan struct{})
			sup.Go("containerd", func(ctx context.Context) error { return containerd.Run(ctx, cc, log, ready) })
			isReady := func(context.Context) bool {
				select {
				case <-ready:
					return true
				default:
					return false
				}
			}
			return sup.Wait(ctx, "containerd", containerdReadyTimeout, isReady, func() string { return "see " + cc.LogPath() })
		}},
		{Name: "images", Run: func(ctx context.Context) error {
			res, err := containerd.ImportDir(ctx, cc.Socket, cfg.ImagesDir(), filepath.Join(cc.Root, "k1s-imported-images.json"), log)
			if err != nil {
				return err
			}
			log.Infof("air-gap images in %s: %d imported, %d already present, %d failed",
				cfg.ImagesDir(), len(res.Imported), len(res.Skipped), len(res.Failed))
			return nil
		}},
	}
}
