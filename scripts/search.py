#!/usr/bin/env python
"""Random hyperparameter search, the book's chapter 6 (python scripts/search.py --help)."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.search import main

if __name__ == "__main__":
    sys.exit(main())
