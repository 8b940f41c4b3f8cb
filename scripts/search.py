#!/usr/bin/env python
"""Random hyperparameter search, the book's chapter 6 (python scripts/search.py --help)."""

import sys

from _launch import launch

if __name__ == "__main__":
    sys.exit(launch("xpnet.apps.search"))
