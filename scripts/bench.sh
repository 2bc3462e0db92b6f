#!/usr/bin/env bash
# The benchmark in one command: prepare the machine (scripts/setup.sh), then
# run pitr side by side with pgBackRest and print the table. Arguments go to
# bench/run.py unchanged (./scripts/bench.sh --scale 150). Run as root: the
# PostgreSQL clusters it starts run as the postgres OS user.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${PITR_VENV:-/opt/pitr/venv}"

./scripts/setup.sh
exec "$VENV/bin/python" -m bench.run "$@"
