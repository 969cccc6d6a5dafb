"""``python -m shared.cli``: the command line (shared/cli/main.py)."""

import sys

from shared.cli.main import main

sys.exit(main())
