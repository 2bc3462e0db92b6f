#!/usr/bin/env bash
# Prepare a Debian 12 machine to build and test pitr: system packages and the
# virtual environment. Idempotent; silent and quick when everything is there.
#
#   PITR_VENV   where the virtual environment lives (default /opt/pitr/venv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="${PITR_VENV:-/opt/pitr/venv}"
# The venv must not live under /root: PostgreSQL runs archive_command as the
# postgres OS user, and that user has to execute $VENV/bin/pitr.
PYTHON=/usr/bin/python3
# chromium and its driver: the status page test looks at the page in a real browser.
PACKAGES=(postgresql-15 postgresql-contrib redis-server pgbackrest python3-venv chromium chromium-driver)

umask 022

log() { printf 'setup: %s\n' "$*" >&2; }

# pip and the build backend are chatty even with -q: keep their output for a
# failure only.
pip_quiet() {
    local out
    out="$(mktemp)"
    if ! "$VENV/bin/pip" install -q --disable-pip-version-check "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        log "pip install $* failed"
        return 1
    fi
    rm -f "$out"
}

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages (${missing[*]}): run this script as root"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The packages start their own daemons on the default ports; tests start
    # private servers instead, so do not leave those running.
    service postgresql stop >/dev/null 2>&1 || true
    service redis-server stop >/dev/null 2>&1 || true
fi

stamp="$VENV/.pitr-install-stamp"
fresh_venv=0
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    fresh_venv=1
fi
if [ "$fresh_venv" -eq 1 ]; then
    pip_quiet --upgrade pip
fi

# An editable install follows the tree, so it only has to be redone when the
# project metadata or the tree's location changes. The postgres user must be
# able to read the tree for an editable install to work for archive_command.
if runuser -u postgres -- test -r "$ROOT/pyproject.toml" 2>/dev/null; then
    want="editable-compat $ROOT $(sha256sum pyproject.toml | cut -d' ' -f1)"
    # Byte-compile the tree, as an install from a wheel does: with
    # PYTHONDONTWRITEBYTECODE set, every pitr start (one per WAL segment)
    # would compile its modules again. Only changed files are recompiled.
    "$VENV/bin/python" -m compileall -q -j 0 catalog archiver recovery pitr >/dev/null 2>&1 || true
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/pitr" ] \
        && [ -x "$VENV/bin/pytest" ]; then
        exit 0
    fi
    log "installing pitr (editable) into $VENV"
    rm -f "$stamp"
    # compat mode puts the tree on sys.path with a plain .pth line: no import
    # hook to load at every start (archive_command starts pitr per segment).
    pip_quiet -e ".[test]" --config-settings editable_mode=compat
    printf '%s\n' "$want" >"$stamp"
else
    # A copy cannot follow code changes: reinstall the package every time.
    log "installing pitr (copy, the postgres user cannot read $ROOT) into $VENV"
    rm -f "$stamp"
    pip_quiet ".[test]"
    pip_quiet --no-deps --force-reinstall .
fi
