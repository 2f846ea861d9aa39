#!/usr/bin/env bash
# Run the analyzer (sets up .venv and system packages on first use).
# Usage: ./run.sh [run_stream.py options], e.g. ./run.sh --device softphone.monitor
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh run
exec .venv/bin/python run_stream.py "$@"
