#!/usr/bin/env bash
# Install what is missing, then run `pitr demo`: throwaway PostgreSQL and
# Redis servers archived, damaged and restored to an instant. Arguments go to
# `pitr demo` (./scripts/demo.sh --keep).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${PITR_VENV:-/opt/pitr/venv}"

./scripts/setup.sh
exec "$VENV/bin/pitr" demo "$@"
