#!/bin/sh
# Installs protobufjs (pinned in package.json / package-lock.json) into
# tests/trace/node_modules for the loopback OTLP collector (collector.js).
# Idempotent. Exit status 0 when usable, 2 when npm or node is absent (the
# export scenario skips), 1 on failure.
set -u
cd "$(dirname "$0")" || exit 1
if [ -f node_modules/protobufjs/package.json ] &&
	! [ package-lock.json -nt node_modules/.package-lock.json ]; then
	exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
	echo "tests/trace/setup.sh: npm or node not found; the OTLP export test will be skipped" >&2
	exit 2
fi
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error >&2 || exit 1
else
	npm install --no-audit --no-fund --loglevel=error >&2 || exit 1
fi
[ -f node_modules/protobufjs/package.json ]
