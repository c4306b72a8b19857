"""``python -m fmmloopy.cli``: the ``fmmloopy`` command."""

import sys

from fmmloopy.cli.main import main

sys.exit(main())
