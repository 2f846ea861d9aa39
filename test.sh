#!/usr/bin/env bash
# Run lint and the test suite (sets up .venv, test tools and services' packages on first use).
# The corpora are read from $EMOTION_DATA_DIR, default ../shared/data.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh test
export EMOTION_DATA_DIR="${EMOTION_DATA_DIR:-$(cd .. && pwd)/shared/data}"
.venv/bin/ruff check streamer tests tools scripts run_stream.py
.venv/bin/ruff format --check streamer tests tools scripts run_stream.py
exec .venv/bin/python -m pytest "$@"
