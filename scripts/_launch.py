"""What every script does before its command runs: find the package, import it, run `main`.

Runs from a fresh clone too, before or without `pip install -e .`. Importing NumPy & co. takes a
moment; Ctrl-C during it is no error either, just exit status 130.
"""

import importlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def launch(module: str) -> int:
    """Import `module` (e.g. "xpnet.apps.train") and return its main()'s exit status."""
    # A KeyboardInterrupt raised in the middle of an import can land inside NumPy's C module
    # set-up (which reports it as an ImportError with a traceback) or in importlib's own
    # callbacks (which print "Exception ignored" and carry on): Ctrl-C is only noted while
    # importing, and acted on once the import is done.
    interrupted = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
        try:
            main = importlib.import_module(module).main
        finally:
            signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:  # before the note-taking handler was installed
        interrupted.append(signal.SIGINT)
    if interrupted:
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
        return 130
    return main()
