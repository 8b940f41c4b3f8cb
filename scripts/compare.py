#!/usr/bin/env python
"""Run one of the slides' comparison experiments (python scripts/compare.py --help for the list)."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.experiments import main

if __name__ == "__main__":
    sys.exit(main())
