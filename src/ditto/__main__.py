"""`python -m ditto ...`: the `ditto` command without its console script (e.g. from a source tree)."""

import sys

from ditto.cli import main

sys.exit(main())
