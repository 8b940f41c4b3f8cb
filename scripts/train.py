#!/usr/bin/env python
"""Train the slides' network (python scripts/train.py --help for the options)."""

import sys

from _launch import launch

if __name__ == "__main__":
    sys.exit(launch("xpnet.apps.train"))
