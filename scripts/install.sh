#!/usr/bin/env bash
# Installs a built k1s binary on this host: /usr/local/bin/k1s plus the
# multicall link kubectl. Usage: scripts/install.sh [path/to/k1s]
set -euo pipefail
src=${1:-"$(dirname "$0")/../bin/k1s"}
dest=${K1S_INSTALL_DIR:-/usr/local/bin}
if [ ! -x "$src" ]; then
	echo "install: $src not found or not executable; run 'make' first" >&2
	exit 1
fi
install -m 0755 "$src" "$dest/k1s"
# Do not shadow a kubectl that is not ours.
if [ ! -e "$dest/kubectl" ] || [ "$(readlink "$dest/kubectl")" = k1s ]; then
	ln -sf k1s "$dest/kubectl"
fi
echo "installed $dest/k1s ($("$dest/k1s" --version | tr '\n' ' '))"
echo "start a cluster with: k1s server   (state in /var/lib/k1s, admin kubeconfig at /etc/k1s/k1s.yaml)"
