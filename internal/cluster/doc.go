// Package cluster runs throwaway multi-node k1s clusters on one host,
// without containers: one Linux bridge per cluster, one network namespace
// per node on it, and in each a detached `k1s server` or `k1s agent`
// process with its own data, run and kubelet dirs and its own kubelet
// cgroup root.
//
// The parts are kept apart: config.go reads cluster.yaml, plan.go is a
// pure planner (names, subnet, addresses, ports, node arguments), state.go
// records under StateRoot everything a cluster owns before it is made,
// network.go makes and removes the bridge, namespaces and iptables rules,
// ports.go turns port mappings into rules, node.go starts and tears down
// node processes, and cluster.go ties them into create, delete, load and
// the other commands. Everything on the host carries the cluster's prefix,
// so Delete also cleans up after a create that was killed half-way.
package cluster
