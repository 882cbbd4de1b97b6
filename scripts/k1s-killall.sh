#!/usr/bin/env bash
# Stops everything k1s started on this host and removes its runtime traces:
# the k1s server/agent process, its containerd, the shims and containers,
# mounts, the Pod bridge and veths, iptables chains of Kubernetes and CNI,
# the Pods' cgroups and the CNI state. Data (the datastore, certificates,
# images) stays in the data dir.
#
# Processes are found by their k1s paths (command line, executable, runc
# state), never by name. Override the paths for a non-default install:
#   K1S_DATA_DIR (/var/lib/k1s)  K1S_RUN_DIR (/run/k1s)
#   K1S_KUBELET_DIR (/var/lib/kubelet)  K1S_BRIDGE (k1s0)
#   K1S_CGROUP_ROOT (the kubelet's --cgroup-root, if one was given)
#   K1S_CLUSTER_CIDR (10.42.0.0/16; host-gw routes inside it are removed)
set -u
[ "$(id -u)" = 0 ] || { echo "k1s-killall: run as root" >&2; exit 1; }

data=${K1S_DATA_DIR:-/var/lib/k1s}
run=${K1S_RUN_DIR:-/run/k1s}
kubelet=${K1S_KUBELET_DIR:-/var/lib/kubelet}
bridge=${K1S_BRIDGE:-k1s0}
cgroot=${K1S_CGROUP_ROOT:-}
K1S_CLUSTER_CIDR=${K1S_CLUSTER_CIDR:-10.42.0.0/16}
cgroot=${cgroot#/}
data=$(readlink -m "$data"); run=$(readlink -m "$run"); kubelet=$(readlink -m "$kubelet")

# pids_by_path prints PIDs whose command line or executable lies below one of the paths.
pids_by_path() {
	local p cmd exe
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		cmd=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null) || continue
		exe=$(readlink /proc/$p/exe 2>/dev/null)
		for path in "$@"; do
			case " $cmd $exe " in
			*" $path/"*|*"=$path/"*|*" $path "*|*"=$path "*) echo "$p"; break ;;
			esac
		done
	done
}

# Container processes: the init PIDs runc recorded under the run dir.
container_pids() {
	local f
	for f in "$run"/runc/*/*/state.json; do
		[ -f "$f" ] || continue
		grep -o '"init_process_pid":[0-9]*' "$f" | cut -d: -f2
	done
}

stop_pids() {
	local pids=("$@") p
	[ ${#pids[@]} -gt 0 ] || return 0
	echo "k1s-killall: stopping PIDs ${pids[*]}"
	kill -TERM "${pids[@]}" 2>/dev/null
	for _ in $(seq 50); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && return 0
		sleep 0.1
	done
	kill -KILL "${pids[@]}" 2>/dev/null
	sleep 0.2
}

# 1. k1s itself and its containerd, then shims and containers.
mapfile -t main < <(pids_by_path "$data" "$run")
stop_pids "${main[@]}"
mapfile -t ctrs < <(container_pids)
mapfile -t shims < <(pids_by_path "$data/agent/bin")
stop_pids "${ctrs[@]}" "${shims[@]}"

# 2. Mounts below our directories, deepest first.
for dir in "$kubelet" "$run" "$data"; do
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null && echo "k1s-killall: unmounted $m"
	done
done

# 3. The Pod bridge (veths go with their network namespaces), flannel's
# vxlan devices (their routes go with them) and host-gw routes.
if ip link show "$bridge" >/dev/null 2>&1; then
	ip link delete "$bridge" && echo "k1s-killall: deleted bridge $bridge"
fi
for dev in flannel.1 flannel-v6.1; do
	if ip link show "$dev" >/dev/null 2>&1; then
		ip link delete "$dev" && echo "k1s-killall: deleted $dev"
	fi
done
# host-gw routes to other nodes' Pod CIDRs (flannel marks none, so match the cluster CIDR).
if [ -n "${K1S_CLUSTER_CIDR:-}" ]; then
	ip route show root "$K1S_CLUSTER_CIDR" 2>/dev/null | while read -r dst rest; do
		ip route delete "$dst" 2>/dev/null && echo "k1s-killall: deleted route to $dst"
	done
fi

# 4. iptables chains of Kubernetes and CNI, and the rules that jump to them.
if command -v iptables-save >/dev/null 2>&1; then
	for save in iptables-save ip6tables-save; do
		restore=${save%-save}-restore
		command -v "$save" >/dev/null 2>&1 || continue
		if "$save" 2>/dev/null | grep -qE 'KUBE-|CNI-|FLANNEL-'; then
			"$save" | grep -vE 'KUBE-|CNI-|FLANNEL-' | "$restore" && echo "k1s-killall: removed KUBE-/CNI-/FLANNEL- chains ($save)"
		fi
	done
fi
# kube-proxy's and flannel's nftables modes keep their rules in tables of their own.
if command -v nft >/dev/null 2>&1; then
	for fam in ip ip6; do
		nft delete table "$fam" kube-proxy 2>/dev/null && echo "k1s-killall: deleted nftables table $fam kube-proxy"
	done
	nft delete table ip flannel-ipv4 2>/dev/null && echo "k1s-killall: deleted nftables table ip flannel-ipv4"
	nft delete table ip6 flannel-ipv6 2>/dev/null && echo "k1s-killall: deleted nftables table ip6 flannel-ipv6"
fi

# 5. Pod cgroups (cgroupfs driver): remove the kubepods tree in every hierarchy.
for root in /sys/fs/cgroup/*/${cgroot:+$cgroot/}kubepods /sys/fs/cgroup/${cgroot:+$cgroot/}kubepods; do
	[ -d "$root" ] || continue
	find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
done
if [ -n "$cgroot" ]; then
	for d in /sys/fs/cgroup/*/"$cgroot" /sys/fs/cgroup/"$cgroot"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
fi

# 6. CNI state of the k1s network (host-local leases, cached results).
rm -rf /var/lib/cni/networks/k1s /var/lib/cni/results/k1s-* 2>/dev/null

# 7. Runtime state that only made sense for the stopped processes.
rm -rf "$run" 2>/dev/null
exit 0
