#!/bin/sh
# run-tests.sh BUILD - runs every test suite, then the unit, fuzz-replay and
# end-to-end suites again in an AddressSanitizer + UndefinedBehaviorSanitizer
# build (halt on the first finding), then the valgrind suite. Prints the
# summary line "N passed, N failed" (read by CI); exit 0 only when nothing
# failed.
set -u
build=${1:-build}
asan=${ASAN_BUILD:-build-asan}
here=$(cd "$(dirname "$0")" && pwd)
logs=""

echo "== $build: all suites"
meson test -C "$build" --print-errorlogs --num-processes 2 --no-suite valgrind
logs="$logs $build/meson-logs/testlog.json"
cp "$build/meson-logs/testlog.json" "$build/meson-logs/testlog-main.json" 2>/dev/null
logs="$build/meson-logs/testlog-main.json"

if [ "${YY_SKIP_VALGRIND:-}" != 1 ] && command -v valgrind >/dev/null 2>&1; then
    echo "== $build: valgrind suite"
    meson test -C "$build" --print-errorlogs --num-processes 2 --suite valgrind
    cp "$build/meson-logs/testlog.json" "$build/meson-logs/testlog-valgrind.json"
    logs="$logs $build/meson-logs/testlog-valgrind.json"
fi

if [ "${YY_SKIP_ASAN:-}" != 1 ]; then
    echo "== $asan: AddressSanitizer + UndefinedBehaviorSanitizer"
    if [ ! -f "$asan/build.ninja" ]; then
        meson setup "$asan" --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
            >/dev/null || exit 1
    fi
    ninja -C "$asan" || exit 1
    ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    YY_SANITIZED=1 \
        meson test -C "$asan" --print-errorlogs --num-processes 2 --suite unit --suite fuzz \
            --suite e2e --timeout-multiplier 3
    cp "$asan/meson-logs/testlog.json" "$asan/meson-logs/testlog-asan.json"
    logs="$logs $asan/meson-logs/testlog-asan.json"
fi

python3 "$here/test-summary.py" $logs
