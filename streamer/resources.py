"""Where the trained model and the dashboard are, installed or in a checkout.

Both stay at the repository's top level (``models/``, ``dashboard/``); the
wheel installs them inside the package as ``streamer.models`` and
``streamer.dashboard`` (``package-dir`` in pyproject.toml; each folder has an
empty ``__init__.py`` so that editable installs map it too), so
``pip install .`` gives a runnable analyzer from any working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def models_dir() -> Path:
    """The folder with the shipped model (``config.json``, the model files).

    Returns
    -------
    Path
        A real filesystem path (the wheel installs unzipped): LiteRT and
        Keras open the model files by name.
    """
    return Path(str(files("streamer.models")))


def dashboard_dir() -> Path:
    """The folder with the dashboard's static files (``index.html``, ``vendor/``), served as a directory."""
    return Path(str(files("streamer.dashboard")))
