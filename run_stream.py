#!/usr/bin/env python3
"""Live speech-emotion analyzer: ``./run.sh`` runs this; the installed command is ``call-emotions``.

Options and examples: ``./run.sh --help``. Then open http://127.0.0.1:8765/ .
"""

from streamer.app.cli import entry

if __name__ == "__main__":
    entry()
