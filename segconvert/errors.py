"""Errors that segconvert reports to people.

Three kinds are kept apart, as imageio and Datumaro do, because a batch treats them
differently: a :class:`SourceError` stops the whole run (the JSON cannot be read, an
option makes no sense), an :class:`ItemError` fails one image while the others go on,
and :class:`FormatNotFound` / :class:`BackendMissing` are about the installation.
Every message names the file and the item, so a line in a summary of 100,000 images is
enough to find and fix the input.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


class SegconvertError(Exception):
    """Base of every error segconvert raises on purpose (never a bug)."""


class SourceError(SegconvertError):
    """The source or the options as a whole are unusable; nothing can be converted."""

    def __init__(self, message: str, *, file: str | PathLike[str] | None = None):
        self.file = str(file) if file is not None else None
        self.message = message
        super().__init__(f"{self.file}: {message}" if self.file else message)


class OutputError(SourceError):
    """OUTPUT cannot be written (disk full, read-only, no permission, quota, file size limit).

    Fatal to the run, unlike an :class:`ItemError`: every later item would fail the same
    way. The store raises it for any OSError of a write, so a worker can tell it from an
    input that cannot be read; the run stops at once, keeps the finished items, and the
    same command resumes once the cause is fixed.
    """

    def __reduce__(self) -> tuple[Any, tuple[str, str | None]]:  # survive the trip back from a worker
        return (_rebuild_output_error, (self.message, self.file))


def _rebuild_output_error(message: str, file: str | None) -> OutputError:
    return OutputError(message, file=file)


class ItemError(SegconvertError):
    """One image cannot be converted; the batch goes on without it.

    ``item`` is the reference_id (or whatever names the image in the source) and
    ``file`` the file whose content is wrong, so the message reads
    ``panoptic/0001.png [0001]: PNG is 640x427 but panoptic.json says 640x480``.
    """

    def __init__(
        self,
        message: str,
        *,
        item: str | None = None,
        file: str | PathLike[str] | None = None,
    ):
        self.message = message
        self.item = item
        self.file = str(file) if file is not None else None
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.item:
            where.append(f"[{self.item}]")
        return f"{' '.join(where)}: {self.message}" if where else self.message

    def located(self, *, item: str | None = None, file: str | PathLike[str] | None = None) -> ItemError:
        """Fill in where the error happened, when the code that raised it did not know."""
        if self.item is None and item is not None:
            self.item = item
        if self.file is None and file is not None:
            self.file = str(file)
        self.args = (self._render(),)
        return self

    def __reduce__(self) -> tuple[Any, tuple[str, str | None, str | None]]:  # survive the trip from a worker
        return (_rebuild_item_error, (self.message, self.item, self.file))


def _rebuild_item_error(message: str, item: str | None, file: str | None) -> ItemError:
    return ItemError(message, item=item, file=file)


class FormatNotFound(SegconvertError):
    """No converter of that name; the message lists the ones there are."""


class BackendMissing(SegconvertError):
    """A converter needs a package that is not installed; the message says what to install."""


# ---------------------------------------------------------------- naming options in messages

#: how messages name options: "python" (keyword arguments) unless the command set "cli"
_style = "python"
#: option names whose Python argument differs from the flag
_PY_NAMES = {"from": "from_format", "to": "to_format"}


def set_option_style(style: str) -> None:
    """``"cli"`` from the ``segconvert`` command (and its forked workers), else ``"python"``."""
    global _style
    _style = style


def opt(name: str, value: object = None) -> str:
    """An option as the caller knows it: ``--index compact`` on the command line,
    ``index="compact"`` in Python. ``value`` may be a placeholder such as ``"DIR"``.

    Messages are read by whoever called: a library user has no ``--index`` flag.
    """
    if _style == "cli":
        flag = "--" + name.replace("_", "-")
        if value is True:
            return flag
        return flag if value is None else f"{flag} {value}"
    py = _PY_NAMES.get(name, name.replace("-", "_"))
    if value is None:
        return py  # the argument itself: "labels must be ...", "(map it with labels)"
    if isinstance(value, str) and value.isupper():  # a placeholder: DIR, FILE, N
        return f"{py}=<{value.lower()}>"
    if isinstance(value, str) and "|" in value:  # choices: unknown="background" or "ignore"
        return f"{py}=" + " or ".join(f'"{v}"' for v in value.split("|"))
    if isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdigit():
        return f"{py}={value}"  # a number given as text
    return f"{py}={value!r}".replace("'", '"')
