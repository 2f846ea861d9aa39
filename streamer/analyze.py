"""``python -m streamer.analyze FILE...``: the file analyzer (``streamer.analysis.files``) under its first name.

Kept because scripts and users call it so; ``call-emotions-analyze`` is the
installed command.
"""

import sys

from streamer.analysis.files import main

if __name__ == "__main__":
    sys.exit(main())
