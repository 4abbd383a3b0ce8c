#!/usr/bin/env python3
"""Regenerate the simulated-cell pictures in docs/sim/ (see mtopt_sim.docs)."""

import sys

from mtopt_sim.docs import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
