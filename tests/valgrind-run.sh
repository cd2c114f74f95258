#!/bin/sh
# valgrind-run.sh VALGRIND ARGS... - runs a test program under valgrind
# memcheck, with valgrind's exit status.
#
# One case is a skip (exit 77), not a failure: valgrind (3.19) stops with
# SIGILL at the rdtscp instruction that libhwy (loaded with libjxl) runs
# while the program loads, on CPUs whose CPUID does not announce rdtscp
# (some AMD EPYC VMs here). Nothing of ours has run then; the codecs stay
# checked by the AddressSanitizer build.
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
"$@" 2>"$out"
rc=$?
cat "$out" >&2
if [ "$rc" -eq 132 ] && grep -q "Illegal opcode" "$out" && grep -q "libhwy" "$out" &&
    ! grep -qw rdtscp /proc/cpuinfo; then
    echo "SKIP: valgrind cannot run libhwy's start-up (rdtscp) on this CPU" >&2
    exit 77
fi
exit "$rc"
