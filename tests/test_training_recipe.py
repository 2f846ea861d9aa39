"""The training recipe's pure parts: corpora, speaker statistics, band warping, evaluation helpers.

Imports no TensorFlow: trainer and evaluate import Keras only when training.
"""

from pathlib import Path

import numpy as np
import pytest

from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter, window_moments
from streamer.core.features import FeatureConfig, FeatureStats
from streamer.core.labels import EMOTION_INDEX
from streamer.training.cache import N_VARIANTS, FeatureCache, recorded_levels
from streamer.training.corpora import Clip, find_clips, parse_nemo_path, read_nemo_labels
from streamer.training.trainer import (
    HOP_FRAMES,
    clip_moments,
    clip_windows,
    sample_speaker_stats,
    sampling_weights,
    warp_bands,
)

CONFIG = FeatureConfig()
NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def test_nemo_labels_come_from_data_tsv(tmp_path):
    root = tmp_path / "nemo"
    (root / "samples").mkdir(parents=True)
    rows = [
        "EB0_anger_1.opus\tanger\tTo jest test.\tto jest test\tEB0\tfemale\t27",
        'KS0_surprised_2.opus\tsurprised\t"Cytat" w tekście\tcytat w tekście\tKS0\tmale\t23',
        "XX0_boredom_1.opus\tboredom\tNie.\tnie\tXX0\tmale\t30",  # not one of our emotions
    ]
    (root / "data.tsv").write_text(NEMO_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    for name in ("EB0_anger_1.opus", "KS0_surprised_2.opus", "XX0_boredom_1.opus", "unlisted.opus"):
        (root / "samples" / name).write_bytes(b"x")
    labels = read_nemo_labels(root / "data.tsv")
    assert labels == {"EB0_anger_1.opus": ("EB0", "angry"), "KS0_surprised_2.opus": ("KS0", "surprised")}
    clip = parse_nemo_path(root / "samples" / "EB0_anger_1.opus", labels)
    assert (clip.corpus, clip.speaker, clip.emotion) == ("nemo", "nemo-EB0", "angry")
    inventory = find_clips(tmp_path, ("nemo",))
    assert sorted(c.path.name for c in inventory.clips) == ["EB0_anger_1.opus", "KS0_surprised_2.opus"]
    assert sorted(p.name for p, _ in inventory.skipped) == ["XX0_boredom_1.opus", "unlisted.opus"]


def test_emospeech_labels_come_from_data_tsv_and_calm_is_neutral(tmp_path):
    root = tmp_path / "emospeech"
    (root / "samples").mkdir(parents=True)
    header = "file\tspeaker\temotion\tkeyword\tenvironment\tlocation\tduration_s\n"
    rows = [
        "S001_angry_bacho_1.opus\tS001\tangry\tbacho\tsafe\twebservice\t3.157",
        "S002_calm_help_2.opus\tS002\tcalm\thelp\tsafe\twebservice\t3.157",
        "S003_bored_no_3.opus\tS003\tbored\tno\tsafe\twebservice\t3.157",
    ]
    (root / "data.tsv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    for name in ("S001_angry_bacho_1.opus", "S002_calm_help_2.opus", "S003_bored_no_3.opus"):
        (root / "samples" / name).write_bytes(b"x")
    inventory = find_clips(tmp_path, ("emospeech",))
    got = sorted((c.corpus, c.speaker, c.emotion) for c in inventory.clips)
    assert got == [("emospeech", "emospeech-S001", "angry"), ("emospeech", "emospeech-S002", "neutral")]
    assert [p.name for p, _ in inventory.skipped] == ["S003_bored_no_3.opus"]


def test_level_channel_gets_back_the_recorded_loudness():
    """Clips levelled to one RMS (-23 dBFS) get back, in the level channel only, the level they were recorded at."""
    config = FeatureConfig(prosody=True)
    clips = [Clip(Path(f"{s}{i}"), "ravdess", s, "angry") for s in ("a", "b") for i in range(3)]
    frames = np.zeros((len(clips) * N_VARIANTS * 2, config.n_features), np.float16)
    offsets = np.arange(0, frames.shape[0] + 1, 2)[: len(clips) * N_VARIANTS + 1]
    offsets = np.stack([offsets[i * N_VARIANTS : i * N_VARIANTS + N_VARIANTS + 1] for i in range(len(clips))])
    cache = FeatureCache(clips, frames, offsets, [])
    levels = np.array([-20.0, -26.0, -23.0, -40.0, -30.0, -35.0])
    recorded_levels(cache, levels, config)
    level = config.channel("level")
    for i, expected in enumerate([3.0, -3.0, 0.0, -17.0, -7.0, -12.0]):
        assert np.all(cache.get(i, 0)[:, level] == expected) and np.all(
            cache.get(i, N_VARIANTS - 1)[:, level] == expected
        )
    assert not np.any(cache.frames[:, : config.n_mels])  # the mel bands are untouched


@pytest.mark.data
def test_real_nemo(data_dir):
    clips = find_clips(data_dir, ("nemo",)).clips
    assert len(clips) == 4481
    assert len({c.speaker for c in clips}) == 9
    assert {c.emotion for c in clips} == {"neutral", "happy", "sad", "angry", "fearful", "surprised"}


def fake_cache(rng: np.random.Generator) -> FeatureCache:
    """Two speakers with two emotions each; speaker B's features sit 6 dB-ish off speaker A's."""
    clips, parts, offsets, position = [], [], [], 0
    for speaker, shift in (("a", 0.0), ("b", 6.0)):
        for emotion in ("angry", "sad"):
            for k in range(3):
                clips.append(Clip(Path(f"{speaker}-{emotion}-{k}"), "ravdess", speaker, emotion))
                row = [position]
                for _ in range(N_VARIANTS):
                    n = int(rng.integers(CONFIG.window_frames, CONFIG.window_frames + 60))
                    frames = rng.normal(0, 3, (n, CONFIG.n_mels)) + np.linspace(shift, -shift, CONFIG.n_mels)
                    parts.append(frames.astype(np.float16))
                    position += n
                    row.append(position)
                offsets.append(row)
    return FeatureCache(clips, np.concatenate(parts), np.array(offsets, np.int64), [])


def test_clip_moments_are_the_adapters_moments():
    cache = fake_cache(np.random.default_rng(0))
    moments = clip_moments(cache, CONFIG)
    windows = clip_windows(cache.get(4, 2).astype(np.float32), CONFIG, HOP_FRAMES)
    mean, mean_sq = window_moments(windows, CONFIG)
    assert moments.count[4, 2] == len(windows)
    np.testing.assert_allclose(moments.total[4, 2], mean.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(moments.total_sq[4, 2], mean_sq.sum(axis=0), rtol=1e-6)
    # A session of all of a clip's windows gives the adapter the same statistics.
    adapter = SpeakerAdapter(population_of(cache), CONFIG, AdaptationConfig(max_weight=1.0))
    adapter.observe(windows)
    np.testing.assert_allclose(adapter.moments.total, moments.total[4, 2], rtol=1e-6)


def population_of(cache: FeatureCache) -> FeatureStats:
    return FeatureStats(np.zeros(CONFIG.n_mels, np.float32), np.ones(CONFIG.n_mels, np.float32))


def test_sampled_speaker_stats_follow_the_speaker():
    rng = np.random.default_rng(1)
    cache = fake_cache(rng)
    moments = clip_moments(cache, CONFIG)
    population = population_of(cache)
    train = np.arange(len(cache.clips))
    chosen = np.repeat([0, 6], 400)  # speaker a's and speaker b's first clip
    variants = np.zeros(chosen.size, int)
    stats = sample_speaker_stats(cache, moments, train, chosen, variants, population, rng, CONFIG)
    assert stats.mean.shape == (chosen.size, CONFIG.n_mels)
    unadapted = np.all(stats.mean == 0, axis=1) & np.all(stats.std == 1, axis=1)
    assert 0.15 < unadapted.mean() < 0.35  # a quarter of windows: the population's statistics
    # Speaker b's spectrum tilts down from band 0 to band 63; adapted rows follow it, a's do not.
    tilt = stats.mean[:, 0] - stats.mean[:, -1]
    assert tilt[chosen == 6][~unadapted[chosen == 6]].mean() > 2.0
    assert abs(tilt[chosen == 0][~unadapted[chosen == 0]].mean()) < 1.0


def test_corpus_shares_are_renormalised_over_present_corpora():
    clips = [Clip(Path(f"r{i}"), "ravdess", "r", "angry") for i in range(3)]
    clips += [Clip(Path(f"n{i}"), "nemo", "n", e) for i, e in enumerate(["sad", "sad", "angry", "angry"])]
    cache = FeatureCache(clips, np.zeros((0, 1)), np.zeros((len(clips), N_VARIANTS + 1), np.int64), [])
    weights = sampling_weights(cache, np.arange(len(clips)), {"ravdess": 0.45, "tess": 0.15, "nemo": 0.4})
    assert weights.sum() == pytest.approx(1.0)
    assert weights[:3].sum() == pytest.approx(0.45 / 0.85)
    assert weights[3] == pytest.approx(weights[5])  # emotions equal within a corpus


def test_band_warp_stretches_the_mel_axis():
    rng = np.random.default_rng(2)
    batch = np.tile(np.arange(CONFIG.n_mels, dtype=np.float32), (3, 10, 1))
    assert np.allclose(warp_bands(batch, 0.0, rng), batch)
    warped = warp_bands(batch, 0.1, rng)
    ratio = warped[:, 0, 10:40] / batch[:, 0, 10:40]
    assert np.all((ratio > 0.89) & (ratio < 1.11))
    assert np.allclose(ratio, ratio[:, :1], atol=1e-4)  # one factor per window
    assert not np.allclose(warped, batch)


def test_restricted_predictions_merge_calm_into_neutral():
    from streamer.training.evaluate import max_class_share, restricted_predictions

    neutral, calm, angry, sad = (EMOTION_INDEX[e] for e in ("neutral", "calm", "angry", "sad"))
    probs = np.zeros((3, 8))
    probs[0, [calm, neutral, angry]] = [0.3, 0.25, 0.45]  # calm + neutral beat angry
    probs[1, [calm, angry, sad]] = [0.5, 0.1, 0.4]  # calm counts as neutral
    probs[2, [EMOTION_INDEX["disgust"], sad]] = [0.9, 0.1]  # disgust is not a test class
    predicted = restricted_predictions(probs, [neutral, angry, sad])
    assert predicted.tolist() == [neutral, neutral, sad]
    assert max_class_share(predicted) == pytest.approx(2 / 3)


def test_calibration_is_cross_fitted_and_helps_overconfident_folds():
    from streamer.training.evaluate import calibrate
    from streamer.training.trainer import WindowPredictions

    rng = np.random.default_rng(3)
    folds, truth = [], []
    for _ in range(6):
        labels = rng.integers(0, 8, 300)
        logits = rng.normal(0, 1, (300, 8))
        logits[np.arange(300), labels] += 1.0
        sharp = np.exp(logits * 4)  # four times too confident
        probs = sharp / sharp.sum(axis=1, keepdims=True)
        folds.append(WindowPredictions(probs, np.arange(301), np.zeros(300)))
        truth.append(labels)
    result = calibrate(folds, truth, "test folds")
    assert 3.0 < result["temperature"] < 5.5
    assert result["ece_after"] < result["ece_before"] / 2


def test_mixup_keeps_each_windows_own_label_dominant():
    from streamer.training.trainer import mixup

    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 5, 3)).astype(np.float32)
    target = np.eye(8)[rng.integers(0, 8, 50)]
    mixed, soft = mixup(x, target, 0.4, rng)
    assert mixed.shape == x.shape and mixed.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)
    assert np.all((soft * target).sum(axis=1) >= 0.5 - 1e-6)  # own label keeps at least half


def test_roc_auc_equals_the_pairwise_definition_and_arousal_ua_counts_both_sides():
    from streamer.core.labels import EMOTION_INDEX
    from streamer.training.metrics import arousal_ua, roc_auc

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(60), 1)  # many ties
    positive = rng.random(60) < 0.3
    pos, neg = scores[positive], scores[~positive]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(scores, positive) == pytest.approx(pairwise)
    assert roc_auc(scores, np.zeros(60, bool)) is None

    def clip(emotion):
        return np.eye(8)[EMOTION_INDEX[emotion]]

    probs = np.stack([clip("angry"), clip("happy"), clip("neutral"), clip("sad"), clip("calm"), clip("disgust")])
    truth = np.array([EMOTION_INDEX[e] for e in ("angry", "sad", "neutral", "sad", "angry", "disgust")])
    # high: angry right, angry (said calm) wrong -> 0.5; low: sad (said happy) wrong, neutral, sad right -> 2/3
    assert arousal_ua(probs, truth) == pytest.approx((0.5 + 2 / 3) / 2)
    assert arousal_ua(probs[:1], truth[:1]) is None


def test_model_card_shows_the_signals_of_the_run_that_measured_them():
    from streamer.training.model_card import _signals

    def corpus(auc):
        block = {"angry_auc": auc, "arousal_ua": 0.75}
        return {"cold": block, "adapted": block, "single_emotion_sessions": block}

    assert _signals({"leave_one_corpus_out": {"tess": {"cold": {"ua": 0.5}}}}) == "(not measured yet)"
    metrics = {"leave_one_corpus_out": {}, "experiments": {"signals": {"leave_one_corpus_out": {"tess": corpus(0.9)}}}}
    card = _signals(metrics)
    assert "Measured by `signals`" in card and "| tess | 0.900 | 0.900 | 0.900 | 0.750 |" in card
