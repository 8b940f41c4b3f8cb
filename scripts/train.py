#!/usr/bin/env python
"""Train the slides' network (python scripts/train.py --help for the options)."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
