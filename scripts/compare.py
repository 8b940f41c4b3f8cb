#!/usr/bin/env python
"""Run one of the slides' comparison experiments (python scripts/compare.py --help for the list)."""

import sys

from _launch import launch

if __name__ == "__main__":
    sys.exit(launch("xpnet.apps.compare"))
