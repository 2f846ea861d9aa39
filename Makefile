# Model work. The corpora come from $EMOTION_DATA_DIR (default ../shared/data).
EMOTION_DATA_DIR ?= $(abspath ../shared/data)
export EMOTION_DATA_DIR
PY := .venv/bin/python

.PHONY: setup train evaluate test lint format

setup:
	scripts/bootstrap.sh test

train: setup        ## the shipped model into models/ (~3 min on 2 cores, +5 min feature cache once)
	$(PY) -m streamer.training.train

evaluate: setup     ## models/metrics.json and models/MODEL_CARD.md (~27 min on 2 cores)
	$(PY) -m streamer.training.evaluate

test:
	./test.sh

lint:
	.venv/bin/ruff check streamer tests scripts run_stream.py
	.venv/bin/ruff format --check streamer tests scripts run_stream.py

format:
	.venv/bin/ruff format streamer tests scripts run_stream.py
	.venv/bin/ruff check --fix streamer tests scripts run_stream.py
