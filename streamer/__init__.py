"""Live speech-emotion analyzer for call centres.

Layers (see docs/architecture.md): ``core`` (pure), ``sources``, ``calls``,
``analysis``, ``workers``, ``outputs``, ``app``; ``training`` builds the model.
"""

__version__ = "0.1.0"
