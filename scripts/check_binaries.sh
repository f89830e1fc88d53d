#!/usr/bin/env bash
# Checks every built binary: jemalloc is linked (NEEDED), --version names the version and jemalloc's,
# --help answers; the Swift runtime is linked statically (ldd names only system libraries, as a plain Debian image
# has them) and the binary starts with the toolchain folder hidden from the loader (a private mount namespace with an
# empty tmpfs over it, LD_LIBRARY_PATH empty). Prints 'N passed, N failed'.
set -u
bin=${1:-out/bin}
passed=0; failed=0
check() { if "$@"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAILED: $*" >&2; fi; }
# the toolchain folder: where `swift` lives, two levels up (/opt/swift/usr/bin/swift -> /opt/swift)
swift_bin=$(command -v swift || echo /opt/swift/usr/bin/swift)
toolchain=$(cd "$(dirname "$swift_bin")/../.." 2>/dev/null && pwd || echo /opt/swift)
for exe in ms_coordinator ms_controller ms_deployer mindie_sim msctl; do
  f="$bin/$exe"
  check test -x "$f"
  check bash -c "readelf -d '$f' | grep -q 'NEEDED.*libjemalloc.so.2'"
  check bash -c "'$f' --version | grep -q 'jemalloc 5'"
  check bash -c "'$f' --help >/dev/null"
  check bash -c "! ldd '$f' | grep -E 'not found|libswift|libFoundation|libdispatch|libBlocksRuntime|$toolchain'"
  check bash -c "! readelf -d '$f' | grep -E 'R(UN)?PATH.*$toolchain'"
  # unshare -r: a user namespace, so this needs no root; failing to create one is a failure, not a skip
  check unshare -rm bash -c "mount -t tmpfs none '$toolchain' && test ! -e '$toolchain/usr' && LD_LIBRARY_PATH= '$f' --version >/dev/null"
done
echo "binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
