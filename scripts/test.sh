#!/usr/bin/env bash
# Install what is missing, lint (ruff), run the test suite, then type-check
# (mypy --strict). Arguments go to pytest unchanged
# (./scripts/test.sh tests/test_servers.py -x).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${PITR_VENV:-/opt/pitr/venv}"

./scripts/setup.sh

lint=0
"$VENV/bin/ruff" check . || lint=$?

status=0
"$VENV/bin/pytest" "$@" || status=$?

if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
    exit 1
fi

types=0
"$VENV/bin/mypy" || types=$?

if [ "$status" -eq 0 ] && [ "$lint" -ne 0 ]; then
    echo "test: ruff check failed" >&2
    exit 1
fi
if [ "$status" -eq 0 ] && [ "$types" -ne 0 ]; then
    echo "test: mypy --strict failed" >&2
    exit 1
fi
exit "$status"
