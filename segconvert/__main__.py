"""``python -m segconvert`` is the ``segconvert`` command (the console script calls :func:`main`)."""

import gc
from collections.abc import Callable
from typing import Any


def main() -> None:
    """The ``segconvert`` command."""
    load_command()()


def load_command() -> Callable[..., Any]:
    """The command's click group, imported with the cyclic garbage collector paused.

    Start-up creates ~100,000 objects (numpy, click, the converters) and no garbage; the
    collector walked them over and over as they were made: ~45 M instructions, against 520 M
    for the whole start-up of a VOC run (whose floor is 0.2 s for 300 small masks).
    ``gc.freeze`` then moves them out of every later collection, which walks only what the
    items allocate. Code that imports segconvert as a library is left alone."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        from segconvert.interfaces.cli import main as command
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return command


if __name__ == "__main__":
    main()
