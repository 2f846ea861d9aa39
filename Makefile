# Model work. The corpora come from $EMOTION_DATA_DIR (default ../shared/data).
EMOTION_DATA_DIR ?= $(abspath ../shared/data)
export EMOTION_DATA_DIR
PY := .venv/bin/python

.PHONY: setup setup-train train evaluate experiments test lint format

setup:
	scripts/bootstrap.sh test

setup-train:
	scripts/bootstrap.sh train

train: setup-train        ## the shipped model into models/ (~3.5 min on 2 cores, +6 min feature cache once)
	$(PY) -m streamer.training.train

evaluate: setup-train     ## models/metrics.json and models/MODEL_CARD.md (see the README for the time)
	$(PY) -m streamer.training.evaluate

# Recipes tried and dropped, leave-one-corpus-out only (~20 min each on 2 cores);
# recorded in metrics.json's "experiments" and the model card.
experiments: setup-train
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --experiment no_speaker_adaptation --no-adapt
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --experiment band_warp_0.1 --band-warp 0.1
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --experiment corpus_adversarial_0.1 --adversarial 0.1
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --experiment mixup_0.4 --mixup 0.4
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --experiment shares_50_10_40 --corpus-share 0.5 0.1 0.4

test:
	./test.sh

lint:
	.venv/bin/ruff check streamer tests tools scripts run_stream.py
	.venv/bin/ruff format --check streamer tests tools scripts run_stream.py

format:
	.venv/bin/ruff format streamer tests tools scripts run_stream.py
	.venv/bin/ruff check --fix streamer tests tools scripts run_stream.py
