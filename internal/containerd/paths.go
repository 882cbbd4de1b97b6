// Package containerd owns the node's container runtime: it writes
// containerd's configuration, runs containerd (the binary embedded in k1s by
// package nodebin and installed in the node's bin dir) as a supervised child
// process, waits until it serves, imports the air-gap image tarballs, and
// provides the `k1s ctr` multicall entry point.
package containerd

// Namespace is the containerd namespace the CRI (and so Kubernetes) uses.
const Namespace = "k8s.io"

// DefaultSocket is where `k1s ctr` looks when CONTAINERD_ADDRESS is unset:
// the socket of a node with the default --run-dir.
const DefaultSocket = "/run/k1s/containerd/containerd.sock"
