"""`python -m mtopt_demo`: see `mtopt_demo.cli`."""

import sys

from mtopt_demo.cli import main

sys.exit(main())
