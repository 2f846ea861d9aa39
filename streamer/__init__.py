"""Live speech-emotion analyzer for call centres.

The core (labels, audio cleaning, features, windowing, speech gating, scoring)
has no device, network or TensorFlow dependency; adapters live beside it.
"""

__version__ = "0.1.0"
