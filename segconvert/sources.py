"""What the command line accepts as a SOURCE: a path that exists, or a glob that matches.

Kept out of ``cli.py`` so that the readers' notion of a source (a file, a folder, a
quoted pattern such as ``'masks/**/*.png'`` for the rgb reader) has one place to grow.
The shell expands an unquoted pattern itself; a quoted one reaches segconvert as it is,
and the reader that takes patterns (rgb) expands it with :func:`glob.glob`
(``recursive=True``), the same rule as here.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

import click

#: the characters that make a SOURCE a pattern (those :mod:`glob` expands)
GLOB_CHARS = re.compile(r"[*?\[]")


def is_pattern(text: str) -> bool:
    return GLOB_CHARS.search(text) is not None


class SourcePath(click.ParamType):
    """A path that exists, or a glob pattern that matches at least one path.

    A pattern that matches nothing is a usage error (exit 2) naming the pattern, not a run
    that converts 0 of 0 items.
    """

    name = "path|glob"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if os.path.exists(text):
            return text
        if is_pattern(text):
            if next(glob.iglob(text, recursive=True), None) is not None:
                return text
            self.fail(f"the pattern {text!r} matches no file or folder", param, ctx)
        self.fail(f"{text!r} does not exist", param, ctx)


SOURCE = SourcePath()
