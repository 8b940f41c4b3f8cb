#!/usr/bin/env python
"""Run one of the slides' comparison experiments (python scripts/compare.py --help for the list)."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    try:  # importing NumPy & co. takes a moment: Ctrl-C then is no error either
        from xpnet.experiments import main
    except KeyboardInterrupt:
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
