"""segconvert: convert image segmentation annotations between formats (Nucleus, COCO, ...)."""

from segconvert.errors import BackendMissing, FormatNotFound, ItemError, SegconvertError, SourceError
from segconvert.ir import Category, FailedItem, Item, Segmentation, SegmentInfo

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


def __getattr__(name: str):
    if name == "convert":  # keep `import segconvert` light; the pipeline pulls in multiprocessing
        from segconvert.api import convert

        return convert
    raise AttributeError(name)
