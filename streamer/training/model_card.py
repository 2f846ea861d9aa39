"""Renders ``models/MODEL_CARD.md`` from ``metrics.json`` and ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

from streamer.labels import EMOTIONS


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _confusion_table(matrix: list[list[int]], present: list[str]) -> str:
    rows = ["| true \\ predicted | " + " | ".join(EMOTIONS) + " |", "|---" * (len(EMOTIONS) + 1) + "|"]
    for i, name in enumerate(EMOTIONS):
        if name in present:
            rows.append(f"| **{name}** | " + " | ".join(str(v) for v in matrix[i]) + " |")
    return "\n".join(rows)


def write_model_card(metrics: dict, out: Path) -> Path:
    config_path = out / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    feats = metrics.get("feature_config") or config.get("features", {})
    cv = metrics.get("ravdess_cv", {})
    phone = metrics.get("ravdess_cv_telephone", {})
    tess = metrics.get("tess_holdout", {})
    rnd = metrics.get("random_split", {})
    cross = metrics.get("cross_corpus_ravdess_to_tess", {})

    summary = [
        "| protocol | UA | WA | macro-F1 |",
        "|---|---|---|---|",
    ]
    for name, block in (
        ("RAVDESS 6-fold speaker-independent CV (mean of folds)", cv),
        ("… same, test audio through the telephone channel", phone),
        ("RAVDESS only → TESS (cross-corpus, 7 emotions)", cross),
        ("TESS stratified 25 % hold-out (2 speakers, not generalisation)", tess),
        ("old protocol: random split of pooled clips (speakers shared)", rnd),
    ):
        if block:
            summary.append(
                f"| {name} | {_pct(block.get('ua'))} | {_pct(block.get('wa'))} | {_pct(block.get('macro_f1'))} |"
            )

    folds = ["| fold | test actors | UA | WA | macro-F1 | telephone UA |", "|---|---|---|---|---|---|"]
    for wide, tel in zip(cv.get("per_fold", []), phone.get("per_fold", [])):
        actors = f"{wide['test_actors'][0]}–{wide['test_actors'][-1]}"
        folds.append(
            f"| {wide['fold']} | {actors} | {_pct(wide['ua'])} | {_pct(wide['wa'])} | "
            f"{_pct(wide['macro_f1'])} | {_pct(tel['ua'])} |"
        )
    targets = ["| target | measured | met |", "|---|---|---|"]
    if cv and phone and tess:
        gap = cv["ua"] - phone["ua"]
        for name, value, ok in (
            ("RAVDESS 6-fold UA ≥ 70 %", _pct(cv["ua"]), cv["ua"] >= 0.70),
            (
                "telephone UA within 3 points of wideband",
                f"{100 * abs(gap):.1f} points {'below' if gap > 0 else 'above'}",
                abs(gap) <= 0.03,
            ),
            ("TESS hold-out UA ≥ 99 %", _pct(tess["ua"]), tess["ua"] >= 0.99),
        ):
            targets.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
    recall = ["| emotion | recall (CV mean) | telephone |", "|---|---|---|"]
    for name in EMOTIONS:
        recall.append(
            f"| {name} | {_pct(cv.get('per_class_recall', {}).get(name))} | "
            f"{_pct(phone.get('per_class_recall', {}).get(name))} |"
        )

    text = f"""# Model card: emotion_lstm

Eight-way speech emotion classifier ({", ".join(EMOTIONS)}) for
{feats.get("window_s", "?")} s windows of audio, used by the live analyzer and the file analyzer.

## Licence: non-commercial

The weights are trained on RAVDESS (CC BY-NC-SA 4.0) and TESS (CC BY-NC-ND 4.0)
and inherit their **non-commercial** terms. Do not use them commercially; a
commercial deployment needs a model trained on suitably licensed data.

## Model

- Input: {feats.get("window_s")} s of mono audio at {feats.get("sample_rate")} Hz →
  {feats.get("n_mels")} log-mel bands over {feats.get("fmin")}–{feats.get("fmax")} Hz
  (the telephone band, so wideband and call audio look alike), {feats.get("n_fft")}-sample
  frames every {feats.get("hop_length")} samples, without centring.
- Normalisation per window: `{feats.get("normalization")}` (gain invariance), then
  per-band standardisation with statistics from the training data (in `config.json`).
- Network: 2 × Conv1D(96) + BatchNorm → max-pool by 4 → bidirectional LSTM(64) →
  mean+max pooling → Dense(64) → softmax(8); {config.get("parameters", "?")} parameters.
- Files: `emotion_lstm.keras` (Keras 3), `emotion_lstm_b{{1,8,32}}.tflite`
  (LiteRT, fixed batch sizes, used for serving), `config.json` (labels, feature
  settings, normalisation statistics).

## Training data and recipe

RAVDESS speech (24 actors, 1440 clips, 8 emotions) and TESS (2 speakers,
2799 clips, 7 emotions, no calm). Clips are resampled to the model rate,
downmixed, trimmed of leading/trailing silence and level-normalised. Each clip
is cached clean, through the telephone channel, and in
four random call-centre conditions (speed/pitch ±10 %, synthetic room
reverberation, white/pink/brown noise or babble at 5–30 dB SNR, gain, and half
of them the telephone channel: 8 kHz, 300–3400 Hz band-pass, 8-bit μ-law).
Training draws random {feats.get("window_s")} s crops; batches are balanced 60/40
between RAVDESS and TESS and equally across emotions within each corpus;
SpecAugment masks; label smoothing 0.1; Adam with cosine decay; a fixed number of
epochs (no early stopping, so no test data steers training).
Settings: `{json.dumps(metrics.get("train_settings", config.get("train_settings", {})))}`.

## Evaluation (all numbers measured by `make evaluate`)

A clip's prediction is the mean of the probabilities of its sliding windows
(hop 0.5 s), as the file analyzer computes it.

{chr(10).join(summary)}

UA = unweighted accuracy (mean per-class recall), WA = weighted accuracy,
fractions of the test clips.

### Against the project's targets

{chr(10).join(targets)}

For scale, published speaker-independent results under this protocol: a
47k-parameter LSTM 65 % UAR, frozen Whisper-large-v3 with a light classifier
75 %. This compact model on telephone-band log-mels does not reach them; the
gap is largest for sad (confused with neutral, fearful and disgust) and calm.

### RAVDESS speaker-independent folds
Fold k tests actors 4k−3…4k and trains on the other 20 actors plus all of TESS.

{chr(10).join(folds)}

Across folds: UA standard deviation {_pct(cv.get("ua_std"))}.

### Per-emotion recall

{chr(10).join(recall)}

### Confusion matrix, RAVDESS CV (summed over folds)

{_confusion_table(cv.get("confusion", [[0] * 8] * 8), list(EMOTIONS))}

## Limits

- Acted speech from 26 North-American English speakers in studio conditions.
  Real calls differ in speakers, accents, languages, spontaneity and channel;
  the cross-corpus number above (a new corpus, same language) is the best
  guide to how much accuracy drops on data unlike the training set, and
  real calls will be harder still.
- "Calm" and "neutral" are hard to separate, and calm exists in RAVDESS only.
- TESS hold-out accuracy is high because its two speakers are in training;
  it says nothing about new speakers. The random-split number shows how the
  earlier project's protocol overstated accuracy.
- A window is 2 s: one emotion per window. Scores are probabilities of acted
  categories, not a measure of a person's state; use them as a signal for a
  human supervisor, never for automated decisions about people.

## Reproduce

    make train      # shipped model into models/ (≤ 30 min on 2 CPU cores)
    make evaluate   # this card and metrics.json

Both read the corpora from `$EMOTION_DATA_DIR` (default `../shared/data`).
"""
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path
