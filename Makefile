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

# Recipes tried and dropped, leave-one-corpus-out only (~20-30 min each on 2 cores);
# recorded in metrics.json's "experiments" and the model card. The first five ran before
# the prosody channels and EmoSpeech, hence their flags.
OLD := --no-prosody --corpora ravdess tess nemo --seeds 0
WITH_EMOSPEECH := --train-corpora ravdess tess nemo emospeech --corpus-share 0.35 0.1 0.3 0.25 --seeds 0
experiments: setup-train
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment no_speaker_adaptation --no-adapt
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment band_warp_0.1 --band-warp 0.1
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment corpus_adversarial_0.1 --adversarial 0.1
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment mixup_0.4 --mixup 0.4
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment shares_50_10_40 --corpus-share 0.5 0.1 0.4 0
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(OLD) --experiment signals_shipped_recipe
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(WITH_EMOSPEECH) --no-prosody --no-sweep --experiment mel_only_4corpora
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out $(WITH_EMOSPEECH) --experiment prosody_traits_4corpora
	$(PY) -m streamer.training.evaluate --only leave_one_corpus_out --seeds 0 --no-sweep --experiment prosody_traits_3corpora

test:
	./test.sh

lint:
	.venv/bin/ruff check streamer tests tools scripts run_stream.py
	.venv/bin/ruff format --check streamer tests tools scripts run_stream.py

format:
	.venv/bin/ruff format streamer tests tools scripts run_stream.py
	.venv/bin/ruff check --fix streamer tests tools scripts run_stream.py
