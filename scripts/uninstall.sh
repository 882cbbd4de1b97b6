#!/usr/bin/env bash
# Removes what scripts/install.sh installed. With --purge it also deletes
# k1s's state (/var/lib/k1s, /etc/k1s): the cluster's data is lost.
set -euo pipefail
dest=${K1S_INSTALL_DIR:-/usr/local/bin}
if [ "$(readlink "$dest/kubectl" 2>/dev/null)" = k1s ]; then
	rm -f "$dest/kubectl"
fi
rm -f "$dest/k1s"
if [ "${1:-}" = --purge ]; then
	rm -rf /var/lib/k1s /etc/k1s
	echo "removed k1s and its state"
else
	echo "removed k1s; state kept in /var/lib/k1s and /etc/k1s (use --purge to delete it)"
fi
