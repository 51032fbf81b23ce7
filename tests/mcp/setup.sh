#!/bin/sh
# Installs the real MCP servers the mcp unit tests talk to (pinned in
# package.json / package-lock.json) into tests/mcp/node_modules. Idempotent:
# returns at once when both servers are already installed. Exit status 0 when
# the servers are usable, 2 when npm is absent (tests skip), 1 on failure.
set -u
cd "$(dirname "$0")" || exit 1
if [ -x node_modules/.bin/mcp-server-everything ] &&
	[ -x node_modules/.bin/mcp-server-filesystem ] &&
	! [ package-lock.json -nt node_modules/.package-lock.json ]; then
	exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
	echo "tests/mcp/setup.sh: npm or node not found; MCP server tests will be skipped" >&2
	exit 2
fi
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error >&2 || exit 1
else
	npm install --no-audit --no-fund --loglevel=error >&2 || exit 1
fi
[ -x node_modules/.bin/mcp-server-everything ] && [ -x node_modules/.bin/mcp-server-filesystem ]
