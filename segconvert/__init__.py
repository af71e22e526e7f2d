"""segconvert: convert image segmentation annotations between formats (Nucleus, COCO, ...).

``import segconvert`` imports neither numpy nor the pipeline: the names below, and the
submodules (``segconvert.interfaces.api``, ``segconvert.model.modes``, ``segconvert.model.pack``, ...), load on
first use. That keeps the package light for ``segconvert formats`` and lets the CLI
configure numpy's thread pool before numpy is imported (see ``segconvert.interfaces.cli``).

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
    from segconvert.execution.pipeline import Summary
    from segconvert.interfaces.api import convert
    from segconvert.interfaces.library import Dataset, ItemWarning, Mask, open, write
    from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo

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
    "Category": "segconvert.model.ir",
    "FailedItem": "segconvert.model.ir",
    "Item": "segconvert.model.ir",
    "SegmentInfo": "segconvert.model.ir",
    "Segmentation": "segconvert.model.ir",
    "Summary": "segconvert.execution.pipeline",
    "convert": "segconvert.interfaces.api",
    "Dataset": "segconvert.interfaces.library",
    "ItemWarning": "segconvert.interfaces.library",
    "Mask": "segconvert.interfaces.library",
    "open": "segconvert.interfaces.library",
    "write": "segconvert.interfaces.library",
}

#: modules reachable as attributes after a bare ``import segconvert`` (short name -> module)
_SUBMODULES = {
    "api": "segconvert.interfaces.api",
    "cli": "segconvert.interfaces.cli",
    "cocojson": "segconvert.codecs.cocojson",
    "errors": "segconvert.errors",
    "format": "segconvert.interfaces.format",
    "ir": "segconvert.model.ir",
    "library": "segconvert.interfaces.library",
    "lut": "segconvert.codecs.lut",
    "modes": "segconvert.model.modes",
    "pack": "segconvert.model.pack",
    "paths": "segconvert.io.paths",
    "pipeline": "segconvert.execution.pipeline",
    "png": "segconvert.codecs.png",
    "raster": "segconvert.codecs.raster",
    "registry": "segconvert.interfaces.registry",
    "shapes": "segconvert.codecs.shapes",
    "storage": "segconvert.io.storage",
    "workers": "segconvert.execution.workers",
    "converters": "segconvert.converters",
    # the groups themselves
    "model": "segconvert.model",
    "codecs": "segconvert.codecs",
    "io": "segconvert.io",
    "execution": "segconvert.execution",
    "interfaces": "segconvert.interfaces",
    "checks": "segconvert.checks",
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
