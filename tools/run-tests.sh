#!/bin/sh
# run-tests.sh BUILD - runs every meson test suite of BUILD and prints the
# summary line "N passed, N failed" (read by CI). Exit status: 0 only when
# nothing failed.
set -u
build=${1:-build}
shift 2>/dev/null || true
meson test -C "$build" --print-errorlogs --num-processes 2 "$@" 2>&1 | tail -n 200
rc=$?
python3 "$(dirname "$0")/test-summary.py" "$build/meson-logs/testlog.json"
src=$?
[ $src -ne 0 ] && exit $src
exit 0
