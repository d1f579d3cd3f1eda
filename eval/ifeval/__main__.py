"""``python -m eval.ifeval``: score a responses file; see :mod:`eval.ifeval.cli`."""

import sys

from .cli import main

sys.exit(main())
