#!/bin/sh
# k1s installer: downloads k1s for this machine, checks it against the
# release's sha256 list, installs it with kubectl/crictl/ctr links, the
# air-gap image bundle, a service (systemd, OpenRC, or none: a background
# process) and k1s-killall.sh / k1s[-agent]-uninstall.sh. Running it again
# with another version is the upgrade: data is kept, the service restarted.
#
#   curl -sfL https://github.com/k1s-io/k1s/releases/latest/download/install.sh | sh -
#   curl -sfL .../install.sh | K1S_URL=https://server:6443 K1S_TOKEN=K10... sh -
#   curl -sfL .../install.sh | sh -s - server --disable=ingress
#
# Environment (see README.md, "Install"):
#   K1S_URL, K1S_TOKEN, K1S_TOKEN_FILE  join as an agent (K1S_URL and a token)
#   K1S_*                        any other k1s setting; kept in the service's env file
#   INSTALL_K1S_EXEC             command and flags: "server ...", "agent ..." or just flags
#   INSTALL_K1S_VERSION          release to install (default: the latest)
#   INSTALL_K1S_ARTIFACT_URL     where the release files are served (a dist/ directory)
#   INSTALL_K1S_SKIP_DOWNLOAD    true: k1s and k1s-killall.sh are already in the bin dir
#   INSTALL_K1S_BIN_DIR          where k1s and the links go (/usr/local/bin)
#   INSTALL_K1S_SKIP_ENABLE      true: do not enable the service at boot
#   INSTALL_K1S_SKIP_START       true: do not (re)start the service
#   INSTALL_K1S_FORCE_INIT       systemd, openrc or none (default: detected)
#   INSTALL_K1S_SERVICE_DIR      one directory for the unit or init script, its env
#                                file, and without init the pid and log file
#   INSTALL_K1S_CONFIG_DIR       k1s's configuration directory, removed on uninstall (/etc/k1s)
# POSIX sh: runs under dash and busybox ash.
set -eu

info() { echo "[k1s install] $*"; }
fatal() {
	echo "[k1s install] ERROR: $*" >&2
	echo "[k1s install] nothing was changed on this host" >&2
	exit 1
}
# Past this point a failure may leave a half-done install: say so.
fatal_late() {
	echo "[k1s install] ERROR: $*" >&2
	exit 1
}
is_true() { case "${1:-}" in true | 1 | yes) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" = 0 ] || fatal "run as root (e.g. curl -sfL .../install.sh | sudo sh -)"

# --- settings -------------------------------------------------------------

bin_dir=${INSTALL_K1S_BIN_DIR:-/usr/local/bin}
config_dir=${INSTALL_K1S_CONFIG_DIR:-/etc/k1s}
case "$bin_dir" in /*) ;; *) fatal "INSTALL_K1S_BIN_DIR=$bin_dir must be an absolute path" ;; esac

# The command and flags: INSTALL_K1S_EXEC, then the script's own arguments.
set -f
# shellcheck disable=SC2086
set -- ${INSTALL_K1S_EXEC:-} "$@"
set +f
cmd=
case "${1:-}" in
server | agent) cmd=$1; shift ;;
-* | '') ;;
*) fatal "INSTALL_K1S_EXEC must start with server, agent or a flag, not '$1'" ;;
esac
if [ -z "$cmd" ]; then
	if [ -n "${K1S_URL:-}" ]; then cmd=agent; else cmd=server; fi
fi
if [ "$cmd" = agent ]; then
	[ -n "${K1S_URL:-}" ] || fatal "an agent needs K1S_URL (the server, e.g. https://10.0.0.1:6443)"
	[ -n "${K1S_TOKEN:-}" ] || [ -n "${K1S_TOKEN_FILE:-}" ] ||
		fatal "an agent needs K1S_TOKEN or K1S_TOKEN_FILE (the server's <data-dir>/server/token)"
	if [ -n "${K1S_TOKEN_FILE:-}" ] && [ ! -r "$K1S_TOKEN_FILE" ]; then
		fatal "K1S_TOKEN_FILE=$K1S_TOKEN_FILE cannot be read"
	fi
	name=k1s-agent
else
	[ -z "${K1S_URL:-}" ] || fatal "K1S_URL is set but the command is 'server': unset K1S_URL, or install an agent"
	name=k1s
fi

# Paths k1s will use, for the uninstall and killall scripts.
data_dir=${K1S_DATA_DIR:-/var/lib/k1s}
run_dir=${K1S_RUN_DIR:-/run/k1s}
kubelet_dir=/var/lib/kubelet
cgroup_root=
cluster_cidr=10.42.0.0/16
kubelet_arg() {
	case "$1" in
	root-dir=*) kubelet_dir=${1#*=} ;;
	cgroup-root=*) cgroup_root=${1#*=} ;;
	esac
}
prev=
for a in "$@"; do
	case "$prev" in
	--data-dir | -d) data_dir=$a ;;
	--run-dir) run_dir=$a ;;
	--kubelet-arg) kubelet_arg "$a" ;;
	--cluster-cidr) cluster_cidr=$a ;;
	esac
	case "$a" in
	--token | --token=* | -t | -t=*)
		fatal "do not pass the token as a flag (it would show in the process list): set K1S_TOKEN or K1S_TOKEN_FILE" ;;
	--data-dir=* | -d=*) data_dir=${a#*=} ;;
	--run-dir=*) run_dir=${a#*=} ;;
	--kubelet-arg=*) kubelet_arg "${a#*=}" ;;
	--cluster-cidr=*) cluster_cidr=${a#*=} ;;
	esac
	prev=$a
done
for p in "$data_dir" "$run_dir" "$kubelet_dir"; do
	case "$p" in /*) ;; *) fatal "$p: give k1s's directories as absolute paths" ;; esac
done

# Init system.
init=${INSTALL_K1S_FORCE_INIT:-}
if [ -z "$init" ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		init=systemd
	elif command -v openrc-run >/dev/null 2>&1 && [ -d /etc/init.d ]; then
		init=openrc
	else
		init=none
	fi
fi
svc_dir=${INSTALL_K1S_SERVICE_DIR:-}
case "$init" in
systemd)
	unit_file=${svc_dir:-/etc/systemd/system}/$name.service
	env_file=$unit_file.env
	;;
openrc)
	unit_file=${svc_dir:-/etc/init.d}/$name
	env_file=${svc_dir:-/etc/conf.d}/$name
	# Both live in one directory when it is overridden.
	[ -z "$svc_dir" ] || env_file=$svc_dir/$name.conf
	;;
none)
	pid_file=${svc_dir:-/run}/$name.pid
	log_file=${svc_dir:-/var/log}/$name.log
	;;
*) fatal "INSTALL_K1S_FORCE_INIT=$init: use systemd, openrc or none" ;;
esac

# Architecture and the release's file names.
case "$(uname -m)" in
x86_64 | amd64) arch=amd64; exe_name=k1s ;;
aarch64 | arm64) arch=arm64; exe_name=k1s-arm64 ;;
*) fatal "no k1s build for architecture $(uname -m) (there are amd64 and arm64)" ;;
esac
bundle_name=k1s-airgap-images-$arch.tar.zst
sums_name=sha256sum-$arch.txt

if [ -n "${INSTALL_K1S_ARTIFACT_URL:-}" ]; then
	base_url=${INSTALL_K1S_ARTIFACT_URL%/}
elif [ -n "${INSTALL_K1S_VERSION:-}" ]; then
	base_url=https://github.com/k1s-io/k1s/releases/download/$INSTALL_K1S_VERSION
else
	base_url=https://github.com/k1s-io/k1s/releases/latest/download
fi

# --- download and verify (nothing on the host changes before this passed) --

tmp=$(mktemp -d "${TMPDIR:-/tmp}/k1s-install.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

download() { # url file
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		fatal "neither curl nor wget is installed"
	fi
}
sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		fatal "neither sha256sum nor shasum is installed: cannot verify the download"
	fi
}
# fetch NAME: downloads NAME to $tmp and checks it against the sha256 list.
fetch() {
	info "downloading $base_url/$1"
	download "$base_url/$1" "$tmp/$1" || fatal "download of $base_url/$1 failed"
	want=$(awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/$sums_name")
	[ -n "$want" ] || fatal "$sums_name has no checksum for $1"
	got=$(sha256 "$tmp/$1")
	[ "$got" = "$want" ] || fatal "checksum mismatch for $1: got sha256 $got, $sums_name says $want (a corrupted or tampered download)"
}

if is_true "${INSTALL_K1S_SKIP_DOWNLOAD:-}"; then
	[ -x "$bin_dir/k1s" ] || fatal "INSTALL_K1S_SKIP_DOWNLOAD is set but $bin_dir/k1s is missing or not executable: put the release's $exe_name there as k1s"
	[ -f "$bin_dir/k1s-killall.sh" ] || fatal "INSTALL_K1S_SKIP_DOWNLOAD is set but $bin_dir/k1s-killall.sh is missing: put the release's k1s-killall.sh there"
	cp "$bin_dir/k1s-killall.sh" "$tmp/k1s-killall.sh"
	new_exe=
	info "using $bin_dir/k1s as it is (INSTALL_K1S_SKIP_DOWNLOAD); the air-gap bundle is expected in $data_dir/agent/images/"
else
	info "downloading $base_url/$sums_name"
	download "$base_url/$sums_name" "$tmp/$sums_name" || fatal "download of $base_url/$sums_name failed"
	fetch "$exe_name"
	fetch "$bundle_name"
	fetch k1s-killall.sh
	chmod 0755 "$tmp/$exe_name"
	new_exe=$tmp/$exe_name
	# The release file unpacks its k1s into <data-dir>/data/ on its first
	# start: doing it here, with the data dir k1s will use, keeps that wait
	# out of the service's start.
	K1S_DATA_DIR=$data_dir "$new_exe" --version >/dev/null 2>&1 || fatal "the downloaded $exe_name does not run on this machine ($(uname -m))"
fi
version=$(K1S_DATA_DIR=$data_dir "${new_exe:-$bin_dir/k1s}" --version 2>/dev/null | head -n 1)

# --- install ----------------------------------------------------------------

mkdir -p "$bin_dir"
if [ -n "$new_exe" ]; then
	# A rename over the old file is atomic; a running k1s keeps its old inode.
	cp "$new_exe" "$bin_dir/.k1s.new.$$"
	chmod 0755 "$bin_dir/.k1s.new.$$"
	mv -f "$bin_dir/.k1s.new.$$" "$bin_dir/k1s"
	info "installed $bin_dir/k1s ($version)"
fi
for l in kubectl crictl ctr; do
	target=$(readlink "$bin_dir/$l" 2>/dev/null || true)
	if [ -e "$bin_dir/$l" ] || [ -L "$bin_dir/$l" ]; then
		case "$target" in
		k1s | "$bin_dir/k1s") continue ;;
		*) info "leaving $bin_dir/$l alone: it is not k1s's"; continue ;;
		esac
	fi
	ln -s k1s "$bin_dir/$l"
done

# k1s-killall.sh as released, with this install's paths as its defaults.
# Lines ending in the marker are this header, replaced on every install.
mark="# paths of this install, set by install.sh"
{
	head -n 1 "$tmp/k1s-killall.sh"
	echo ": \"\${K1S_DATA_DIR:=$data_dir}\" \"\${K1S_RUN_DIR:=$run_dir}\" \"\${K1S_KUBELET_DIR:=$kubelet_dir}\" $mark"
	echo ": \"\${K1S_CGROUP_ROOT:=$cgroup_root}\" \"\${K1S_CLUSTER_CIDR:=$cluster_cidr}\" $mark"
	tail -n +2 "$tmp/k1s-killall.sh" | grep -vF "$mark"
} >"$bin_dir/.k1s-killall.sh.new.$$"
chmod 0755 "$bin_dir/.k1s-killall.sh.new.$$"
mv -f "$bin_dir/.k1s-killall.sh.new.$$" "$bin_dir/k1s-killall.sh"
command -v bash >/dev/null 2>&1 || info "warning: k1s-killall.sh needs bash, which this host lacks"

if [ -n "$new_exe" ]; then
	# The data dir is private to root, as k1s itself creates it.
	[ -d "$data_dir" ] || (umask 077 && mkdir -p "$data_dir")
	# The file k1s locks: it marks the dir as k1s's for k1s-killall.sh
	# even before k1s first ran.
	[ -e "$data_dir/.k1s.lock" ] || (umask 077 && : >"$data_dir/.k1s.lock")
	mkdir -p "$data_dir/agent/images"
	cp "$tmp/$bundle_name" "$data_dir/agent/images/.$bundle_name.new.$$"
	mv -f "$data_dir/agent/images/.$bundle_name.new.$$" "$data_dir/agent/images/$bundle_name"
	info "air-gap images in $data_dir/agent/images/$bundle_name"
fi

# quote_systemd WORD: one ExecStart= argument, quoted for systemd.
quote_systemd() {
	printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g')"
}
# quote_sh WORD: WORD in single quotes for sh.
quote_sh() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
args_systemd=$cmd
args_sh=$cmd
for a in "$@"; do
	args_systemd="$args_systemd $(quote_systemd "$a")"
	args_sh="$args_sh $(quote_sh "$a")"
done

# write_env FILE QUOTE PREFIX: the K1S_* settings (the token among them) in
# a file only root can read, so they never show on a command line.
write_env() {
	(umask 077 && : >"$1.new.$$")
	env | grep '^K1S_[A-Z0-9_]*=' | while IFS= read -r kv; do
		printf '%s%s=%s\n' "$3" "${kv%%=*}" "$($2 "${kv#*=}")"
	done >>"$1.new.$$"
	chmod 0600 "$1.new.$$"
	mv -f "$1.new.$$" "$1"
}
quote_env() { printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }

modprobe_cmd="modprobe -a br_netfilter overlay 2>/dev/null || true"

case "$init" in
systemd)
	mkdir -p "$(dirname "$unit_file")"
	write_env "$env_file" quote_env ""
	cat >"$unit_file.new.$$" <<EOF
# Written by k1s's install.sh; rerun it to change or upgrade.
[Unit]
Description=k1s $cmd (lightweight Kubernetes)
Documentation=https://github.com/k1s-io/k1s
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-$env_file
# The node's containerd, shims and containers live in this unit's cgroup
# and must survive a restart of k1s (upgrade): only k1s itself is stopped.
Delegate=yes
KillMode=process
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/bin/sh -c '$modprobe_cmd'
ExecStart=$bin_dir/k1s $args_systemd

[Install]
WantedBy=multi-user.target
EOF
	mv -f "$unit_file.new.$$" "$unit_file"
	info "wrote $unit_file and $env_file (mode 0600)"
	if ! is_true "${INSTALL_K1S_SKIP_ENABLE:-}" || ! is_true "${INSTALL_K1S_SKIP_START:-}"; then
		systemctl daemon-reload
	fi
	is_true "${INSTALL_K1S_SKIP_ENABLE:-}" || systemctl enable "$name.service"
	if ! is_true "${INSTALL_K1S_SKIP_START:-}"; then
		info "(re)starting $name.service"
		systemctl restart "$name.service" || fatal_late "$name.service did not start: journalctl -u $name.service"
	fi
	;;
openrc)
	mkdir -p "$(dirname "$unit_file")" "$(dirname "$env_file")"
	write_env "$env_file" quote_sh "export "
	cat >"$unit_file.new.$$" <<EOF
#!/sbin/openrc-run
# Written by k1s's install.sh; rerun it to change or upgrade.
description="k1s $cmd (lightweight Kubernetes)"
supervisor=supervise-daemon
command="$bin_dir/k1s"
command_args="$(printf '%s' "$args_sh" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\$/\\$/g' -e 's/`/\\`/g')"
pidfile="/run/$name.pid"
output_log="/var/log/$name.log"
error_log="/var/log/$name.log"
respawn_delay=5
respawn_max=0
rc_ulimit="-n 1048576 -u unlimited"
# Stop only k1s: containers must survive a restart (upgrade).
rc_cgroup_cleanup=no

depend() {
	want cgroups
	after network-online
}

start_pre() {
	# The K1S_* settings, the token among them, only root can read.
	[ -r "$env_file" ] && . "$env_file"
	$modprobe_cmd
}
EOF
	chmod 0755 "$unit_file.new.$$"
	mv -f "$unit_file.new.$$" "$unit_file"
	info "wrote $unit_file and $env_file (mode 0600)"
	is_true "${INSTALL_K1S_SKIP_ENABLE:-}" || rc-update add "$name" default
	if ! is_true "${INSTALL_K1S_SKIP_START:-}"; then
		info "(re)starting $name"
		rc-service "$name" restart || fatal_late "$name did not start: see /var/log/$name.log"
	fi
	;;
none)
	# is_our_k1s PID: whether PID runs this install's k1s: $bin_dir/k1s, or
	# the k1s that release file (a launcher) unpacked and exec'd,
	# <data-dir>/data/<sha256>/k1s; " (deleted)" after an upgrade. The
	# kernel names the exe by its real path: a symlinked dir is resolved.
	is_our_k1s() {
		exe=$(readlink "/proc/$1/exe" 2>/dev/null || true)
		real_bin=$(readlink -f "$bin_dir" 2>/dev/null || echo "$bin_dir")
		real_data=$(readlink -f "$data_dir" 2>/dev/null || echo "$data_dir")
		case "${exe% (deleted)}" in "$real_bin/k1s" | "$real_data"/data/*/k1s) return 0 ;; esac
		return 1
	}
	# stop_old: the k1s this script started before (an upgrade), by the PID
	# in the pid file, if that PID still runs our k1s.
	stop_old() {
		[ -f "$pid_file" ] || return 0
		old=$(cat "$pid_file")
		case "$old" in '' | *[!0-9]*) return 0 ;; esac
		is_our_k1s "$old" || return 0
		info "stopping the running k1s (PID $old)"
		kill -TERM "$old" 2>/dev/null || return 0
		i=0
		while [ -d "/proc/$old" ] && [ $i -lt 900 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if [ -d "/proc/$old" ]; then
			info "k1s (PID $old) did not stop within 90s; killing it"
			kill -KILL "$old" 2>/dev/null || true
			sleep 1
		fi
	}
	if is_true "${INSTALL_K1S_SKIP_START:-}"; then
		info "no init system; not started (INSTALL_K1S_SKIP_START): run $bin_dir/k1s $cmd $*"
	else
		stop_old
		mkdir -p "$(dirname "$pid_file")" "$(dirname "$log_file")"
		# The K1S_* settings (the token) reach k1s through its environment.
		# setsid: its own session, so no terminal hang-up reaches it. It
		# execs in place (a background job is no group leader): $! is k1s.
		# Descriptors 3-9 are closed: a caller's lock or pipe held open by
		# a long-running k1s would never be released.
		detach=
		command -v setsid >/dev/null 2>&1 && detach=setsid
		(
			trap - EXIT
			cd /
			exec $detach "$bin_dir/k1s" "$cmd" "$@" </dev/null >>"$log_file" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
		) &
		echo $! >"$pid_file"
		sleep 2
		if ! is_our_k1s "$(cat "$pid_file")"; then
			tail -n 20 "$log_file" >&2 || true
			fatal_late "k1s $cmd exited at once (or is not PID $(cat "$pid_file")); its log is $log_file"
		fi
		info "no init system: started k1s $cmd in the background (PID $(cat "$pid_file"), pid file $pid_file, log $log_file)"
		info "it is not restarted if it stops or at boot; $bin_dir/$name-uninstall.sh stops and removes it"
	fi
	;;
esac

# --- uninstall script -------------------------------------------------------

uninstall=$bin_dir/$name-uninstall.sh
cat >"$uninstall.new.$$" <<EOF
#!/bin/sh
# Written by k1s's install.sh: stops $name and removes everything this
# install put on the host, including the cluster's data in $data_dir.
set -u
[ "\$(id -u)" = 0 ] || { echo "$name-uninstall: run as root" >&2; exit 1; }
init=$init
name=$name
bin_dir='$bin_dir'
data_dir='$data_dir'
pid_file='${pid_file:-}'
EOF
cat >>"$uninstall.new.$$" <<'EOF'
case "$init" in
systemd)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$name.service" 2>/dev/null
	fi
	;;
openrc)
	if command -v rc-service >/dev/null 2>&1; then
		rc-service "$name" stop 2>/dev/null
		rc-update del "$name" default 2>/dev/null
	fi
	;;
none)
	pid=$(cat "$pid_file" 2>/dev/null || true)
	case "$pid" in '' | *[!0-9]*) pid= ;; esac
	if [ -n "$pid" ]; then
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
		real_bin=$(readlink -f "$bin_dir" 2>/dev/null || echo "$bin_dir")
		real_data=$(readlink -f "$data_dir" 2>/dev/null || echo "$data_dir")
		case "${exe% (deleted)}" in "$real_bin/k1s" | "$real_data"/data/*/k1s) ;; *) pid= ;; esac
	fi
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		i=0
		while [ -d "/proc/$pid" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i + 1)); done
	fi
	;;
esac
# Whatever is still running (k1s, containerd, shims, containers), mounts,
# network devices, routes, firewall rules, Pod cgroups, CNI state.
if [ -f "$bin_dir/k1s-killall.sh" ]; then
	bash "$bin_dir/k1s-killall.sh" || {
		echo "$name-uninstall: k1s-killall.sh failed; nothing more was removed" >&2
		exit 1
	}
fi
EOF
{
	case "$init" in
	systemd | openrc) echo "rm -f '$unit_file' '$env_file'" ;;
	none) echo "rm -f '$pid_file' '$log_file'" ;;
	esac
	[ "$init" = systemd ] && echo '[ -d /run/systemd/system ] && systemctl daemon-reload 2>/dev/null'
	# The data dir was checked by k1s-killall.sh (it refuses a system dir).
	echo "rm -rf '$data_dir' '$run_dir' '$kubelet_dir' '$config_dir'"
	echo "for l in kubectl crictl ctr; do"
	echo "	case \"\$(readlink \"\$bin_dir/\$l\" 2>/dev/null)\" in k1s | \"\$bin_dir/k1s\") rm -f \"\$bin_dir/\$l\" ;; esac"
	echo "done"
	echo "rm -f \"\$bin_dir/k1s\" \"\$bin_dir/k1s-killall.sh\" \"\$bin_dir/k1s-uninstall.sh\" \"\$bin_dir/k1s-agent-uninstall.sh\""
	echo "echo \"$name-uninstall: removed k1s from this host\""
} >>"$uninstall.new.$$"
chmod 0755 "$uninstall.new.$$"
mv -f "$uninstall.new.$$" "$uninstall"
info "to remove k1s and its data: $uninstall"
