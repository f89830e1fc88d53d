#!/usr/bin/env bash
# End-to-end tests with real clients (openai, huggingface_hub, text-generation, tritonclient, requests)
# against mindie_sim directly and through ms_coordinator (tests_py/).
#
#   bash scripts/run_python_tests.sh [pytest args, e.g. tests_py/test_triton.py -k infer]
#
# Binaries: $MINDIE_MS_BIN if set, else out/bin if it holds them, else a release build into .build-py/.
# The venv lives in .venv-e2e/ (created once, reinstalled only when the pins below change).
# Exits with pytest's status; pytest's summary is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Pinned client versions (PyPI). text-generation 0.7.0 needs huggingface_hub < 1.0.
PINS=(
  "pytest==9.2.0"
  "kubernetes-validate==1.37.0"
  "openai==3.57.0"
  "huggingface_hub==0.36.2"
  "text-generation==0.7.0"
  "tritonclient[http]==2.73.0"
  "requests==2.34.2"
)

log() { printf '[run_python_tests] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- binaries
BINS=(mindie_sim ms_coordinator)
have_bins() { local d=$1 b; for b in "${BINS[@]}"; do [ -x "$d/$b" ] || return 1; done; }
if [ -n "${MINDIE_MS_BIN:-}" ]; then
  have_bins "$MINDIE_MS_BIN" || { log "MINDIE_MS_BIN=$MINDIE_MS_BIN lacks ${BINS[*]}"; exit 2; }
elif have_bins "$ROOT/out/bin"; then
  MINDIE_MS_BIN="$ROOT/out/bin"
else
  if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; fi
  log "no binaries in out/bin: building (release, .build-py)"
  swift build -c release --scratch-path .build-py >&2
  MINDIE_MS_BIN=$(swift build -c release --scratch-path .build-py --show-bin-path)
fi
export MINDIE_MS_BIN
log "binaries: $MINDIE_MS_BIN"

# ---------------------------------------------------------------- venv (idempotent)
VENV="$ROOT/.venv-e2e"
STAMP="$VENV/.pins"
WANT=$(printf '%s\n' "${PINS[@]}")
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2 || { log "python3 -m venv failed (Debian: apt-get install python3-venv)"; rm -rf "$VENV"; exit 2; }
fi
# keep the venv out of git whatever the repo's .gitignore says
[ -f "$VENV/.gitignore" ] || printf '*\n' > "$VENV/.gitignore"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  printf '%s\n' "$WANT" > "$STAMP"
fi

# ---------------------------------------------------------------- headless Chromium (tests_py/test_status_page.py)
# The status page is tested in a real browser: Debian's chromium, installed here when missing (the test fails, it
# does not skip, when it cannot be had).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  log "installing chromium (Debian) for the status page test"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    $SUDO apt-get update -qq >&2 || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 \
      || log "chromium could not be installed: tests_py/test_status_page.py will fail"
  fi
fi

# ---------------------------------------------------------------- run
# nothing may reach a model hub at run time: the clients get loopback URLs, never model ids, no tokenizer is
# loaded, huggingface_hub runs offline, and tests_py/conftest.py gives it an HTTP backend that reaches only
# loopback addresses.
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_IMPLICIT_TOKEN=1
export OPENAI_API_KEY=${OPENAI_API_KEY:-sk-local-test}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export PYTHONDONTWRITEBYTECODE=1
set +e
# every test under tests_py/ unless the arguments name test files or ids there
case " $* " in *" tests_py"*) ;; *) set -- "$@" tests_py ;; esac
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
exit $status
