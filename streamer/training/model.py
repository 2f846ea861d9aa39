"""The Keras model and its export to fixed-batch LiteRT (TFLite) files."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402


class GradientReversal(layers.Layer):
    """Identity forward; the gradient backward is negated and scaled (domain-adversarial training)."""

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        @tf.custom_gradient
        def reverse(y):
            return tf.identity(y), lambda dy: -self.scale * dy

        return reverse(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def build_model(
    frames: int,
    n_features: int,
    n_classes: int,
    batch_size: int | None = None,
    n_domains: int = 0,
    reversal: float = 0.3,
) -> keras.Model:
    """Conv front end (local spectral patterns) + BiLSTM (temporal dynamics).

    About 180k parameters: small enough to train in minutes on two cores and
    to run in well under a millisecond per window as LiteRT. With
    ``n_domains`` the model has a second output, ``domain``, a corpus
    classifier behind a gradient reversal: training it pushes the shared
    layers toward features that do not tell the corpora apart. Serving uses
    :func:`emotion_only` (same weights, no domain head).
    """
    inputs = keras.Input((frames, n_features), batch_size=batch_size, name="features")
    x = inputs
    for _ in range(2):
        x = layers.Conv1D(96, 5, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    # Pooling by 4 leaves the LSTM 24 steps per 2 s window: LiteRT runs the LSTM
    # step by step, so this halves inference cost, with no loss in `make evaluate`
    # (figures in docs/architecture.md).
    x = layers.MaxPooling1D(4)(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    embedding = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(embedding)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    if not n_domains:
        return keras.Model(inputs, outputs, name="emotion_lstm")
    d = GradientReversal(reversal)(embedding)
    d = layers.Dense(64, activation="relu")(d)
    domain = layers.Dense(n_domains, activation="softmax", name="domain")(d)
    return keras.Model(inputs, {"probs": outputs, "domain": domain}, name="emotion_lstm_adversarial")


def emotion_only(model: keras.Model) -> keras.Model:
    """The emotion classifier of a model with a domain head (the model itself if it has none)."""
    if model.name == "emotion_lstm":
        return model
    return keras.Model(model.input, model.get_layer("probs").output, name="emotion_lstm")


def export_litert(model: keras.Model, batch_size: int) -> bytes:
    """A LiteRT flatbuffer with a fully fixed input shape.

    A variable time or batch dimension does not convert (TensorListReserve)
    and a batch-1 model cannot be resized under XNNPack, so one file is
    written per batch size.
    """
    _, frames, n_features = model.input_shape
    fixed = build_model(frames, n_features, model.output_shape[-1], batch_size=batch_size)
    fixed.set_weights(model.get_weights())
    return tf.lite.TFLiteConverter.from_keras_model(fixed).convert()
