#!/usr/bin/env python
"""Draw xpnet's pictures (python scripts/visualize.py --help): activations, or a saved model's."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.visualize import main

if __name__ == "__main__":
    sys.exit(main())
