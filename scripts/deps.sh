#!/bin/sh
# Installs the Debian packages rein needs to build and test, when they are
# missing. As root it runs apt-get; otherwise it names what is missing and fails.
# prometheus (prometheus and promtool) is for tests/cli/metrics.sh: promtool
# checks `rein metrics` and a real server scrapes `rein metrics --serve`.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-dev python3 libjansson-dev libyaml-dev libsqlite3-dev liblua5.4-dev libuv1-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libmicrohttpd-dev sqlite3 prometheus"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node and npm run the MCP servers the tests install from the npm registry;
# any node >= 18 will do (Debian's, or one already on the machine)
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "rein: missing Debian packages:$missing" >&2
	echo "rein: run as root, or: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "rein: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends $missing >&2
