"""segconvert: convert image segmentation annotations between formats (Nucleus, COCO, ...).

``import segconvert`` imports neither numpy nor the pipeline: the names below load on
first use. That keeps the package light for ``segconvert formats`` and lets the CLI
configure numpy's thread pool before numpy is imported (see ``segconvert.cli``).
"""

from segconvert.errors import BackendMissing, FormatNotFound, ItemError, SegconvertError, SourceError

__all__ = [
    "BackendMissing",
    "Category",
    "FailedItem",
    "FormatNotFound",
    "Item",
    "ItemError",
    "SegconvertError",
    "SegmentInfo",
    "Segmentation",
    "SourceError",
    "convert",
]
__version__ = "0.1.0"

_LAZY = {
    "Category": "segconvert.ir",
    "FailedItem": "segconvert.ir",
    "Item": "segconvert.ir",
    "SegmentInfo": "segconvert.ir",
    "Segmentation": "segconvert.ir",
    "convert": "segconvert.api",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 module attribute hook
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segconvert' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
