"""`python -m xpnet COMMAND ...`: the same as the `xpnet` command."""

import sys

from .apps.main import main

if __name__ == "__main__":
    sys.exit(main())
