"""How big an image segconvert agrees to allocate: the ``--max-pixels`` limit.

A 2.6 MB PNG can declare 30000x30000 pixels, a 1.3 KB LabelMe JSON or a 366-byte CVAT
XML can declare the same; decoding or painting them takes gigabytes and tens of
seconds. Every reader checks the size an image declares (a PNG's header, a JSON's
width/height, an XML's attributes) with :func:`check_pixels` *before* allocating
anything of that size, and an item over the limit fails alone, with its size.

The limit is process-wide: the pipeline sets it in the main process and in each worker
(:func:`set_max_pixels`), so readers call ``check_pixels(width, height)`` with no limit
argument to thread through. Sizes are Python ints: nothing wraps, however large.
"""

from __future__ import annotations

import io
import operator
import os
import struct
import warnings
from typing import Any

from segconvert.errors import ItemError

#: a little above Pillow's own refusal (2 x 89,478,485 = 178,956,970 pixels)
DEFAULT_MAX_PIXELS = 200_000_000

_max_pixels = DEFAULT_MAX_PIXELS

#: what Pillow raises for a broken image file besides OSError/ValueError: a malformed chunk
#: after the image data (an empty gAMA or tRNS, a short iCCP) surfaces from ``load`` as a
#: struct.error or an IndexError (found by tests/test_fuzz.py); catch these, never Exception
PIL_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


def set_max_pixels(limit: int | None) -> None:
    """Set this process' limit (None: the default)."""
    global _max_pixels
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"--max-pixels must be a positive integer, got {limit!r}")
    _max_pixels = DEFAULT_MAX_PIXELS if limit is None else limit


def max_pixels() -> int:
    return _max_pixels


def check_pixels(width: Any, height: Any, *, item: str | None = None,
                 file: str | os.PathLike[str] | None = None) -> None:
    """ItemError unless ``width`` x ``height`` is a positive size within the limit.

    Call it on a declared size before allocating an image of that size. ``width`` and
    ``height`` must be integers (a reader parses its own attributes first).
    """
    w, h = operator.index(width), operator.index(height)
    if w <= 0 or h <= 0:
        raise ItemError(f"image size {w}x{h} is not positive", item=item, file=file)
    pixels = w * h
    if pixels > _max_pixels:
        raise ItemError(
            f"image size {w}x{h} is {pixels:,} pixels, more than the limit of {_max_pixels:,} "
            "(a decompression bomb, or a wrong size); pass --max-pixels N if the size is right",
            item=item, file=file,
        )


def image_size(source: bytes | str | os.PathLike[str], *, item: str | None = None,
               file: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """(width, height) of an image file or of encoded image bytes, from its header, checked
    against the limit (nothing is decoded).

    Pillow's own bomb check (``DecompressionBombError``) is set to the same limit and
    reported as what it is; an unreadable image raises ValueError with the reason.
    """
    import PIL.Image

    PIL.Image.MAX_IMAGE_PIXELS = _max_pixels // 2 + 1  # Pillow refuses above twice this

    def size_of(fh: Any) -> tuple[int, int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(fh) as im:
                return im.size

    try:
        if isinstance(source, bytes):
            width, height = size_of(io.BytesIO(source))
        elif "://" in os.fspath(source):  # a URL: its header bytes only (sources.probe), not the image
            from segconvert.io import sources

            width, height = sources.probe(source, size_of, final=(PIL.Image.DecompressionBombError,))
        else:
            width, height = size_of(source)
    except PIL.Image.DecompressionBombError as exc:
        raise ItemError(f"decompression bomb: {str(exc).rstrip('. ')}; pass --max-pixels N if the size is right",
                        item=item, file=file) from None
    except PIL_ERRORS as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"not a readable image ({exc})") from None
    check_pixels(width, height, item=item, file=file)
    return int(width), int(height)
