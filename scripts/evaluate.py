#!/usr/bin/env python
"""A saved model's test accuracy, as saved and in 16 bits (python scripts/evaluate.py --help)."""

import sys

from _launch import launch

if __name__ == "__main__":
    sys.exit(launch("xpnet.apps.evaluate"))
