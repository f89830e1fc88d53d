#!/usr/bin/env bash
# Checks every built binary: jemalloc is linked (NEEDED), --version names the version and jemalloc's,
# --help answers. Prints 'N passed, N failed'.
set -u
bin=${1:-out/bin}
passed=0; failed=0
check() { if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAILED: $*" >&2; fi; }
for exe in ms_coordinator ms_controller ms_deployer mindie_sim msctl; do
  f="$bin/$exe"
  check test -x "$f"
  check bash -c "readelf -d '$f' | grep -q 'NEEDED.*libjemalloc.so.2'"
  check bash -c "'$f' --version | grep -q 'jemalloc 5'"
  check bash -c "'$f' --help >/dev/null"
done
echo "binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
