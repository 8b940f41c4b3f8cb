#!/usr/bin/env python
"""Draw xpnet's pictures (python scripts/visualize.py --help): activations, or a saved model's."""

import sys
from pathlib import Path

# Runs from a fresh clone too, before or without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    try:  # importing NumPy & co. takes a moment: Ctrl-C then is no error either
        from xpnet.visualize import main
    except KeyboardInterrupt:
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
