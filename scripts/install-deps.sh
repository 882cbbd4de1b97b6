#!/usr/bin/env bash
# Installs what building, running and testing k1s needs on a fresh Debian
# machine. Safe to run again: it installs only what is missing.
# With --release it also installs what `make release` and its tests need
# (the arm64 cross toolchain and libraries, qemu), which `make test` does not.
set -euo pipefail

release=false
case "${1:-}" in
"") ;;
--release) release=true ;;
*)
	echo "install-deps: unknown argument '$1' (usage: install-deps.sh [--release])" >&2
	exit 2
	;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (apt-get needs it)" >&2
	exit 1
fi

GO=$(command -v go || echo /usr/local/go/bin/go)
if ! "$GO" version >/dev/null 2>&1; then
	echo "install-deps: Go 1.26 or newer is needed (expected at /usr/local/go/bin/go)" >&2
	exit 1
fi

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# cgo (SQLite) needs a C compiler; the PostgreSQL datastore test needs a
# server; test images are built from busybox-static; runc needs libseccomp;
# the node writes iptables rules (nftables for kube-proxy's nftables mode);
# tests build network namespaces with iproute2; the pull-secret test runs
# a real registry (docker-registry); the dashboard test drives chromium.
for pkg in gcc libc6-dev libseccomp-dev make git postgresql ca-certificates busybox-static iptables nftables iproute2 docker-registry chromium; do
	have "$pkg" || need+=("$pkg")
done

add_arch=false
if $release; then
	# The static release executables link glibc, SQLite and (runc)
	# libseccomp for each architecture: amd64's from libc6-dev and
	# libseccomp-dev above, arm64's from the multiarch :arm64 packages
	# with Debian's cross compiler. qemu runs the arm64 executable in tests.
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		add_arch=true
	fi
	for pkg in gcc-aarch64-linux-gnu libc6-dev:arm64 libseccomp-dev:arm64 pkg-config qemu-user-static zstd; do
		if $add_arch || ! have "$pkg"; then
			need+=("$pkg")
		fi
	done
fi

if [ ${#need[@]} -gt 0 ]; then
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if $add_arch; then
		dpkg --add-architecture arm64
	fi
	apt-get update -q
	# Keep package scripts from starting services (PostgreSQL's default
	# cluster): tests start their own servers.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get install -y -q --no-install-recommends "${need[@]}"
fi
