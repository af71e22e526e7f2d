"""Find converters by name: built-ins from a table, third parties from entry points.

Modelled on fsspec's registry: built-in names map to import strings and are imported
on first use (so ``segconvert formats`` does not pay for every converter's imports);
third-party packages register ``FORMAT`` objects in the entry-point group
``segconvert.converters``; a plugin may not take a built-in's name; an unknown name
lists the names there are; a converter that fails to import says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path, PurePath

from segconvert.errors import BackendMissing, FormatNotFound, SourceError, opt
from segconvert.interfaces.format import Format
from segconvert.io.sources import check_url_exists, is_url

ENTRY_POINT_GROUP = "segconvert.converters"

#: built-in converters: name -> "module:attribute" of their ``Format``
BUILTIN: dict[str, str] = {
    "coco-panoptic": "segconvert.converters.coco_panoptic:FORMAT",
    "nucleus": "segconvert.converters.nucleus:FORMAT",
    "rgb": "segconvert.converters.rgb:FORMAT",
    "coco-instances": "segconvert.converters.coco_instances:FORMAT",
    "cityscapes": "segconvert.converters.cityscapes:FORMAT",
    "labelme": "segconvert.converters.labelme:FORMAT",
    "cvat": "segconvert.converters.cvat:FORMAT",
    "sa1b": "segconvert.converters.sa1b:FORMAT",
    "label-studio": "segconvert.converters.label_studio:FORMAT",
    "voc": "segconvert.converters.voc:FORMAT",
    "yolo": "segconvert.converters.yolo:FORMAT",
    "index": "segconvert.converters.index:FORMAT",
}

_loaded: dict[str, Format] = {}


def entry_points(group: str):  # type: ignore[no-untyped-def]
    """importlib.metadata.entry_points, imported on first use (it costs ~25 ms at start-up)."""
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(group=group)


def _plugin_targets() -> dict[str, str]:
    targets = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            # refused, not overridden: "rgb" must mean the same thing on every machine
            continue
        targets[ep.name] = ep.value
    return targets


def _import(name: str, target: str) -> Format:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing == module_name or module_name.startswith(missing + "."):
            raise FormatNotFound(
                f"converter {name!r} is registered as {target} but that module is not there"
            ) from None
        raise BackendMissing(
            f"converter {name!r} needs the package {missing!r}: pip install {missing}"
        ) from exc
    except Exception as exc:  # a broken plugin must not take the whole CLI down
        err = f"{type(exc).__name__}: {exc}"
        raise SourceError(f"converter {name!r} ({target}) failed to import: {err}") from exc
    fmt = getattr(module, attr or "FORMAT")
    if not isinstance(fmt, Format) or fmt.name != name:
        raise SourceError(f"converter {name!r} ({target}) does not define a Format named {name!r}")
    return fmt


def names() -> list[str]:
    """Every registered converter name: built-ins first, then plugins, sorted within each."""
    return list(BUILTIN) + sorted(_plugin_targets())


def is_known(name: str) -> bool:
    """Whether ``name`` is a built-in or a plugin's format: the entry-point scan (~25 ms of
    start-up) only for a name that is not built in."""
    return name in BUILTIN or name in _plugin_targets()


def get(name: str) -> Format:
    """The converter called ``name``; FormatNotFound lists the choices."""
    if name in _loaded:
        return _loaded[name]
    target = BUILTIN.get(name) or _plugin_targets().get(name)
    if target is None:
        raise FormatNotFound(f"unknown format {name!r}; available: {', '.join(names())}")
    fmt = _import(name, target)
    _loaded[name] = fmt
    return fmt


def refused_plugins() -> list[str]:
    """Entry points that tried to take a built-in name (shown by ``segconvert formats``)."""
    return [f"{ep.name} ({ep.value})" for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name in BUILTIN]


def reader_for(name: str) -> Format:
    return _able(name, "reader", "read")


def writer_for(name: str) -> Format:
    return _able(name, "writer", "written")


def _able(name: str, side: str, verb: str) -> Format:
    """Format ``name`` when it has a ``side`` (reader / writer); FormatNotFound naming the formats that do."""
    fmt = get(name)
    if getattr(fmt, side) is None:
        able = [n for n in names() if getattr(_safe(n), side, None) is not None]
        raise FormatNotFound(f"format {name!r} cannot be {verb}; {'readable' if side == 'reader' else 'writable'} "
                             f"formats: {', '.join(able)}")
    return fmt


def detect(source: Path | PurePath) -> str:
    """The one readable format whose ``sniff`` recognises ``source`` (``--from auto``).

    Built-ins are asked first, and plugins only when no built-in recognises the source:
    a plugin cannot take a built-in's name, nor its files; and the entry-point scan
    (~25 ms) is skipped on the common path. A glob SOURCE (``'masks/*.png'``) is judged by
    the files it matches (:func:`detect_pattern`).
    """
    from segconvert.io.sources import is_local_pattern

    if is_local_pattern(source):
        return detect_pattern(str(source))
    if is_url(source):  # no object and no prefix there: say so, not "cannot tell its format"
        check_url_exists(source)
    matches = _recognising(lambda name: _sniffs(name, source, "sniff"))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SourceError(f"cannot tell its format; name it with {opt('from')} (see `segconvert formats`)", file=source)
    raise SourceError(f"could be {' or '.join(matches)}; choose one with {opt('from')}", file=source)


def detect_pattern(pattern: str) -> str:
    """``--from auto`` for a glob SOURCE: the one format whose reader takes patterns and whose
    ``sniff_files`` recognises the matched files (e.g. rgb for mask images, labelme for
    LabelMe JSONs). A pattern that matches no file is a SourceError (exit 2), as on the
    command line."""
    from segconvert.io.sources import expand_pattern

    files = expand_pattern(pattern)
    if not files:
        raise SourceError("the pattern matches no file", file=pattern)

    matches = _recognising(lambda name: _sniffs(name, files, "sniff_files"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SourceError(f"its {len(files)} files could be {' or '.join(matches)}; choose one with {opt('from')}",
                          file=pattern)
    takers = [n for n in BUILTIN if (f := _safe(n)) is not None and f.sniff_files is not None]
    raise SourceError(
        f"cannot tell the format of the {len(files)} files it matches (first: {files[0]}); the readers that take "
        f"a pattern ({', '.join(takers)}) do not recognise them: name the format with {opt('from')}, or give "
        "the folder or file itself", file=pattern)


def _recognising(test: Callable[[str], bool]) -> list[str]:
    """The built-in formats that pass ``test``; the plugins only when no built-in does."""
    matches = [name for name in BUILTIN if test(name)]
    return matches or [name for name in sorted(_plugin_targets()) if test(name)]


def _sniffs(name: str, source: object, check: str) -> bool:
    """Whether format ``name`` reads and its ``check`` (``sniff`` on a path, ``sniff_files`` on
    a glob's matches) recognises ``source``; an unreadable file is not recognised."""
    fmt = _safe(name)
    sniff = getattr(fmt, check, None) if fmt is not None and fmt.reader is not None else None
    if sniff is None:
        return False
    try:
        return bool(sniff(source))
    except OSError:
        return False


def _safe(name: str) -> Format | None:
    try:
        return get(name)
    except (FormatNotFound, BackendMissing, SourceError):
        return None
