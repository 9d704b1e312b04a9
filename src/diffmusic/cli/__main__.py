"""``python -m diffmusic.cli``: the same as the ``diffmusic`` command."""

import sys

from diffmusic.cli import main

sys.exit(main())
