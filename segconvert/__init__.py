"""segconvert: convert image segmentation annotations between formats (Nucleus, COCO, ...).

``import segconvert`` imports neither numpy nor the pipeline: the names below, and the
submodules (``segconvert.api``, ``segconvert.modes``, ``segconvert.pack``, ...), load on
first use. That keeps the package light for ``segconvert formats`` and lets the CLI
configure numpy's thread pool before numpy is imported (see ``segconvert.cli``).

The library in three names: ``segconvert.open(source)`` -> a Dataset (iterate it for the
intermediate representation, ``.masks()`` for Nucleus-style masks in memory);
``segconvert.write(data, output, format)`` runs any writer over a Dataset or any
iterable of Segmentations; ``segconvert.convert(source, output)`` is the command's job.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segconvert.errors import BackendMissing, FormatNotFound, ItemError, SegconvertError, SourceError

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from segconvert.api import convert
    from segconvert.ir import Category, FailedItem, Item, Segmentation, SegmentInfo
    from segconvert.library import Dataset, ItemWarning, Mask, open, write
    from segconvert.pipeline import Summary

__all__ = [
    "BackendMissing",
    "Category",
    "Dataset",
    "FailedItem",
    "FormatNotFound",
    "Item",
    "ItemError",
    "ItemWarning",
    "Mask",
    "SegconvertError",
    "SegmentInfo",
    "Segmentation",
    "SourceError",
    "Summary",
    "convert",
    "open",
    "write",
]
__version__ = "0.1.0"

_LAZY = {
    "Category": "segconvert.ir",
    "FailedItem": "segconvert.ir",
    "Item": "segconvert.ir",
    "SegmentInfo": "segconvert.ir",
    "Segmentation": "segconvert.ir",
    "Summary": "segconvert.pipeline",
    "convert": "segconvert.api",
    "Dataset": "segconvert.library",
    "ItemWarning": "segconvert.library",
    "Mask": "segconvert.library",
    "open": "segconvert.library",
    "write": "segconvert.library",
}

#: modules reachable as attributes after a bare ``import segconvert`` (short name -> module)
_SUBMODULES = {
    "api": "segconvert.api",
    "cli": "segconvert.cli",
    "cocojson": "segconvert.cocojson",
    "errors": "segconvert.errors",
    "format": "segconvert.format",
    "ir": "segconvert.ir",
    "library": "segconvert.library",
    "lut": "segconvert.lut",
    "modes": "segconvert.modes",
    "pack": "segconvert.pack",
    "paths": "segconvert.paths",
    "pipeline": "segconvert.pipeline",
    "png": "segconvert.png",
    "raster": "segconvert.raster",
    "registry": "segconvert.registry",
    "shapes": "segconvert.shapes",
    "storage": "segconvert.storage",
    "workers": "segconvert.workers",
    "converters": "segconvert.converters",
}


def __getattr__(name: str) -> Any:
    """PEP 562: import a lazy name (or a submodule) on first access."""
    if name in _SUBMODULES:
        submodule = importlib.import_module(_SUBMODULES[name])
        globals()[name] = submodule
        return submodule
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'segconvert' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
