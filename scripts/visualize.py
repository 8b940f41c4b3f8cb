#!/usr/bin/env python
"""Draw xpnet's pictures (python scripts/visualize.py --help): activations, or a saved model's."""

import sys

from _launch import launch

if __name__ == "__main__":
    sys.exit(launch("xpnet.apps.visualize"))
