"""OpenCV, imported on first use and set to one thread.

Importing cv2 costs ~60 ms, a quarter of the start-up of a conversion that may not
need it (COCO panoptic packs through the C kernel); and segconvert parallelises across
images with processes, so OpenCV's own thread pool would only oversubscribe the cores.
"""

from __future__ import annotations

from types import ModuleType

_cv2: ModuleType | None = None


def cv2() -> ModuleType:
    global _cv2
    if _cv2 is None:
        import cv2 as module

        module.setNumThreads(1)
        _cv2 = module
    return _cv2
