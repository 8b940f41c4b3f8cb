"""What every script does before its command runs: find the package, import it, run `main`.

Runs from a fresh clone too, before or without `pip install -e .`. Importing NumPy & co. takes a
moment; Ctrl-C during it is no error either, just exit status 130.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def launch(module: str) -> int:
    """Import `module` (e.g. "xpnet.apps.train") and return its main()'s exit status."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
        return 130
    return main()
