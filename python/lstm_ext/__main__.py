"""``python -m lstm_ext``: the command line (check, demo, bench), in :mod:`lstm_ext.tools.cli`."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
