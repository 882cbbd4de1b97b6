#!/usr/bin/env bash
# Stops everything k1s started on this host and removes its runtime traces:
# the k1s server/agent process, its containerd, the shims and containers,
# mounts, the Pod bridge and veths, flannel's device and routes, iptables
# chains of Kubernetes, CNI and k1s's NetworkPolicies (and their ipsets),
# the Pods' cgroups and the CNI state. Data (the datastore, certificates,
# images) stays in the data dir.
#
# Override the paths for a non-default install:
#   K1S_DATA_DIR (/var/lib/k1s)  K1S_RUN_DIR (/run/k1s)
#   K1S_KUBELET_DIR (/var/lib/kubelet)  K1S_BRIDGE (k1s0)
#   K1S_CGROUP_ROOT (the kubelet's --cgroup-root, if one was given)
#   K1S_CLUSTER_CIDR (10.42.0.0/16; flannel's host-gw routes inside it are removed)
#
# Processes are never picked by name, nor because their command line
# mentions a k1s path. The k1s process is the one holding the data dir's
# lock (<data-dir>/.k1s.lock); containerd, shims and runc are the ones
# whose executable is one k1s installed (<data-dir>/agent/bin/); containers
# are the init processes runc recorded under the run dir. The directories
# are checked first: a system directory, a data dir without k1s's lock file
# or a run dir holding anything k1s does not put there is refused, and
# nothing is touched.
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

# What k1s creates directly in its run dir; anything else there means the
# run dir is not (only) k1s's, and removing it would remove someone else's.
run_entries="containerd runc flannel cni-ipam"

refuse() {
	echo "k1s-killall: refusing $1=$2: $3; nothing was stopped or removed" >&2
	exit 2
}

# system_dir reports whether $1 is /, a top-level directory, a directory
# right below one of the system trees, or anything below /proc, /sys, /dev.
system_dir() {
	local parent=${1%/*}
	[ "$1" = / ] || [ -z "$parent" ] && return 0
	case "$1" in /proc/* | /sys/* | /dev/*) return 0 ;; esac
	case "$parent" in /var | /usr | /etc | /home | /boot | /lib | /lib64 | /bin | /sbin) return 0 ;; esac
	return 1
}
for v in "K1S_DATA_DIR:$data" "K1S_RUN_DIR:$run" "K1S_KUBELET_DIR:$kubelet"; do
	system_dir "${v#*:}" && refuse "${v%%:*}" "${v#*:}" "a system directory, not one k1s owns"
done
if [ -e "$data" ]; then
	[ -d "$data" ] || refuse K1S_DATA_DIR "$data" "not a directory"
	# datadir.Acquire creates the lock file at every start of a server or agent.
	[ -f "$data/.k1s.lock" ] || refuse K1S_DATA_DIR "$data" "no .k1s.lock in it, so it is not a k1s data dir (set K1S_DATA_DIR to the --data-dir k1s ran with)"
fi
if [ -e "$run" ]; then
	[ -d "$run" ] || refuse K1S_RUN_DIR "$run" "not a directory"
	foreign=()
	for e in "$run"/* "$run"/.[!.]* "$run"/..?*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		case " $run_entries " in *" ${e##*/} "*) ;; *) foreign+=("${e##*/}") ;; esac
	done
	[ ${#foreign[@]} -eq 0 ] || refuse K1S_RUN_DIR "$run" "it holds ${foreign[*]:0:5}, which k1s does not put in its run dir (k1s puts only: $run_entries)"
fi

# lock_holder prints the PID holding the data dir's lock: the k1s server
# or agent using it. /proc/locks names the holder by PID and inode; the
# holder must also have the file open, which rules out an equal inode
# number on another file system.
lock_holder() {
	local f=$data/.k1s.lock ino pid fd
	[ -f "$f" ] || return 0
	ino=$(stat -c %i "$f") || return 0
	# "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" in field 2.
	for pid in $(awk -v ino="$ino" '$2 != "->" && split($6, a, ":") == 3 && a[3] == ino { print $5 }' /proc/locks); do
		[ "$pid" = $$ ] && continue
		for fd in /proc/"$pid"/fd/*; do
			if [ "$(readlink "$fd" 2>/dev/null)" = "$f" ]; then
				echo "$pid"
				break
			fi
		done
	done
}

# pids_by_exe prints PIDs whose executable lies below directory $1.
pids_by_exe() {
	local p exe
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		exe=$(readlink /proc/"$p"/exe 2>/dev/null) || continue
		case "$exe" in "$1"/*) echo "$p" ;; esac
	done
}

# Container processes: the init PIDs runc recorded under the run dir, if
# each still has the start time runc recorded (a PID reused since, e.g.
# after a reboot with a run dir on disk, is someone else's process).
container_pids() {
	local f pid start stat
	for f in "$run"/runc/*/*/state.json; do
		[ -f "$f" ] || continue
		pid=$(grep -o '"init_process_pid":[0-9]*' "$f" | cut -d: -f2)
		start=$(grep -o '"init_process_start":[0-9]*' "$f" | cut -d: -f2)
		[ -n "$pid" ] && [ -n "$start" ] || continue
		stat=$(cat /proc/"$pid"/stat 2>/dev/null) || continue
		# Field 22 (starttime) is the 20th after the ") " that ends the command name.
		set -- ${stat##*) }
		[ "${20:-}" = "$start" ] && echo "$pid"
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
mapfile -t main < <(lock_holder; pids_by_exe "$data/agent/bin" | while read -r p; do
	exe=$(readlink /proc/"$p"/exe 2>/dev/null)
	[ "${exe% (deleted)}" = "$data/agent/bin/containerd" ] && echo "$p"
done)
stop_pids "${main[@]}"
mapfile -t ctrs < <(container_pids)
mapfile -t shims < <(pids_by_exe "$data/agent/bin")
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
# flannel's host-gw routes: one per other node, to its Pod CIDR (inside the
# cluster CIDR) via its node IP, added over netlink without a protocol, so
# "proto boot". Connected routes of the host's own addresses ("proto kernel"),
# and routes from DHCP, router advertisements or marked "proto static", are
# never touched, even inside the cluster CIDR.
hostgw_routes() {
	local cidr=$1 bits=${1##*/} dst via gw rest
	ip route show root "$cidr" proto boot type unicast table main 2>/dev/null | while read -r dst via gw rest; do
		[ "$via" = via ] || continue
		case "$dst" in */*) ;; *) continue ;; esac
		# A node's Pod CIDR is carved out of the cluster CIDR: strictly longer.
		[ "${dst##*/}" -gt "$bits" ] || continue
		echo "$dst $gw"
	done
}
for cidr in ${K1S_CLUSTER_CIDR//,/ }; do
	case "$cidr" in */*) ;; *) echo "k1s-killall: K1S_CLUSTER_CIDR entry $cidr is not a CIDR; skipped" >&2; continue ;; esac
	hostgw_routes "$cidr" | while read -r dst gw; do
		ip route delete "$dst" via "$gw" proto boot table main 2>/dev/null && echo "k1s-killall: deleted route to $dst via $gw"
	done
done

# 4. iptables chains of Kubernetes and CNI, and the rules that jump to them.
if command -v iptables-save >/dev/null 2>&1; then
	for save in iptables-save ip6tables-save; do
		restore=${save%-save}-restore
		command -v "$save" >/dev/null 2>&1 || continue
		if "$save" 2>/dev/null | grep -qE 'KUBE-|CNI-|FLANNEL-|K1S-NP-'; then
			"$save" | grep -vE 'KUBE-|CNI-|FLANNEL-|K1S-NP-' | "$restore" && echo "k1s-killall: removed KUBE-/CNI-/FLANNEL-/K1S-NP- chains ($save)"
		fi
	done
fi
# The NetworkPolicy ipsets (k1s-np-*), unused once their chains are gone.
# Without the ipset tool they stay (empty of meaning) until the next k1s
# start, which removes every k1s-np-* set it does not use.
if command -v ipset >/dev/null 2>&1; then
	for set in $(ipset list -n 2>/dev/null | grep '^k1s-np-'); do
		ipset destroy "$set" 2>/dev/null && echo "k1s-killall: destroyed ipset $set"
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
# The loopback plugin caches its result per Pod sandbox, named by the
# sandbox ID; our sandboxes are the ones containerd lists under our dirs.
for d in "$run"/containerd/io.containerd.grpc.v1.cri/sandboxes/*/ "$data"/agent/containerd/io.containerd.grpc.v1.cri/sandboxes/*/; do
	[ -d "$d" ] || continue
	id=${d%/}
	rm -f /var/lib/cni/results/cni-loopback-"${id##*/}"-lo
done

# 7. Runtime state that only made sense for the stopped processes.
rm -rf "$run" 2>/dev/null
exit 0
