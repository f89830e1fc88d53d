#!/usr/bin/env bash
# mindie-ms one-key build.
#   bash one_key_build.sh            release build into out/bin
#   bash one_key_build.sh -d         debug build
#   bash one_key_build.sh -v 1.2.3   embed a version (shown by every binary's --version)
#   bash one_key_build.sh --test     install, build once (debug, with the tests), run every test
#   bash one_key_build.sh --run      install, build, start a local cluster on simulated servers
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

MODE=build
CONFIG=release
VERSION=""
RUN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--debug) CONFIG=debug ;;
    -v|--version) VERSION=${2:?-v needs a version}; shift ;;
    --test) MODE=test ;;
    --run) MODE=run; shift; RUN_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "one_key_build.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '\033[1m[one_key_build]\033[0m %s\n' "$*"; }

# ---------------------------------------------------------------- Debian packages (idempotent)
DEB_PACKAGES=(libh2o-evloop-dev libssl-dev libjemalloc-dev libxxhash-dev curl openssl python3-venv python3-pip etcd-server)
# tests only: promtool (Debian's prometheus) checks the Coordinator's /metrics text; the status page is tested in a
# real headless browser
[ "$MODE" = test ] && DEB_PACKAGES+=(prometheus chromium)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  if ! $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
  fi
fi

# ---------------------------------------------------------------- Swift toolchain
if ! command -v swift >/dev/null 2>&1; then
  [ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null || { echo "swift not found (expected Swift 6.3 at /opt/swift)" >&2; exit 1; }

if [ -z "$VERSION" ]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
# The version reaches one C file (Sources/CH2O/version.c) through a gitignored include, rewritten only when it
# changes: a -Xcc define would reach every Swift module's clang importer, so each commit would rebuild everything.
write_version() {
  local inc=Sources/CH2O/version.inc escaped want
  escaped=${VERSION//\\/\\\\}; escaped=${escaped//\"/\\\"}
  want="#define MINDIE_MS_VERSION \"$escaped\""
  if [ ! -f "$inc" ] || [ "$(cat "$inc")" != "$want" ]; then
    printf '%s\n' "$want" > "$inc"
    # a build that saw no version.inc yet has no dependency on it: make it recompile version.c
    touch Sources/CH2O/version.c
  fi
}
write_version

# git keeps files 0644; the binaries refuse config files more open than 0640 (as the reference does)
find conf -type f -name '*.json' -exec chmod 0640 {} +

# the shipped binaries carry the Swift runtime, so that they run in a plain Debian image (Dockerfile); only the build
# of out/bin takes this flag, the test build stays as it is. A debug build (-d) links the runtime dynamically: the
# toolchain's static Foundation only links once dead code is stripped (unoptimized, CoreFoundation symbols stay
# undefined), and a debug build is for this machine, not for an image
BUILD_FLAGS=()
[ "$CONFIG" = release ] && BUILD_FLAGS=(--static-swift-stdlib)
install_binaries() {
  local bin
  bin=$(swift build -c "$1" "${BUILD_FLAGS[@]}" --show-bin-path)
  mkdir -p out/bin
  for exe in ms_coordinator ms_controller ms_deployer mindie_sim msctl; do
    cp -f "$bin/$exe" "out/bin/$exe"
  done
  log "binaries ($1) in $ROOT/out/bin"
}

build() {
  log "building ($CONFIG, version $VERSION${BUILD_FLAGS:+, static Swift runtime})"
  swift build -c "$CONFIG" "${BUILD_FLAGS[@]}"
  install_binaries "$CONFIG"
}

case "$MODE" in
  build)
    build
    ;;
  test)
    # out/bin holds what ships (release, static Swift runtime): the binary checks prove it runs without the
    # toolchain and the end-to-end tests drive it; the test bundle is a debug build (@testable imports)
    build
    log "building the tests (debug, version $VERSION)"
    swift build --build-tests
    export MINDIE_MS_BIN="$ROOT/out/bin"
    log "swift tests"
    set +e
    swift test --skip-build 2>&1 | tee out/swift-test.log
    status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || { log "swift tests failed (full log: out/swift-test.log)"; exit "$status"; }
    log "binary checks"
    bash scripts/check_binaries.sh out/bin
    if [ -x scripts/run_python_tests.sh ]; then
      log "end-to-end tests with real clients"
      bash scripts/run_python_tests.sh
    fi
    log "all tests passed"
    ;;
  run)
    build
    exec bash scripts/local_cluster.sh "${RUN_ARGS[@]}"
    ;;
esac
