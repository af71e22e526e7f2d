"""``--instances DIR``: a class mask paired with the instance mask of the same stem.

Cityscapes ``*_labelIds.png`` + ``*_instanceIds.png``, ADE20K, or any class/object pair
outside the Pascal VOC layout (VOC itself is the ``voc`` reader's). The instance mask
says which pixels form one object; the class mask what the object is:

- instance masks are single-channel (grayscale or palette, 8 or 16 bit): each distinct
  non-zero value is one instance, except 255 in an 8-bit mask, which is void (VOC's
  boundary ring, as in SegmentationObject). With ``--divisor D`` the mask is
  class·D + instance (Cityscapes ``_instanceIds``): only values >= D are instances. An
  RGB instance mask is COCO-panoptic-style ids R + 256·G + 256²·B (0 = none).
- an instance's class is the class under most of its pixels (void pixels not
  counted); when other classes lie under some of them too, a warning names the
  instance (its value in the instance mask) and the pixels of each class. The whole
  instance takes the majority class. An instance over void only is dropped, with a
  warning.
- pixels outside every instance keep their class as a region without an instance
  (stuff; for a thing class, a crowd region, ``iscrowd``): background in instance mode.

Raw ids: class regions keep the class mask's raw ids 1..K; instance j (in order of its
value) is K + 1 + j.
"""

from __future__ import annotations

import numpy as np

from segconvert.codecs import png
from segconvert.converters import rgb
from segconvert.converters.rgb_tables import Spec, Table
from segconvert.errors import ItemError
from segconvert.model.ir import Segmentation, SegmentInfo

_MAX_NAMED = 5  # classes named per disagreeing instance


def instance_values(path: str, ref: str, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """(instance value per pixel, 0 = none; the instance values in order) of an instance mask."""
    where = {"item": ref, "file": path}
    data = rgb._read(path, ref)
    try:
        header = png.read_header(data)
    except ValueError as exc:
        raise ItemError(f"instance mask: {exc}", **where) from None
    if header.color_type in (2, 6):
        keys, void = rgb._pack_rgb(rgb._decode(data, where), where)
        values = keys.copy()
        if void is not None:
            values[void] = 0
    else:
        raw, void = rgb._index_values(data, header, where, "--instances")
        values = raw.astype(np.uint32)
        if spec.divisor is not None:
            values[values < spec.divisor] = 0
        elif raw.dtype == np.uint8:
            values[values == 255] = 0
        if void is not None:
            values[void] = 0
    return values, rgb._distinct(values)


def pair(seg: Segmentation, table: Table, instance_path: str, spec: Spec) -> Segmentation:
    """``seg`` (a class mask's segmentation) with the instances of ``instance_path`` on top."""
    where = {"item": seg.reference_id, "file": instance_path}
    values, ids = instance_values(instance_path, seg.reference_id, spec)
    classes = seg.ids()
    if values.shape != classes.shape:
        raise ItemError(
            f"instance mask is {values.shape[1]}x{values.shape[0]} but the class mask {seg.source} is "
            f"{classes.shape[1]}x{classes.shape[0]}", **where,
        )
    if not len(ids):
        return seg
    n_cls = int(classes.max()) + 1 if classes.size else 1
    # instance code 1..n per pixel (0 = none), by position of the value in ``ids``
    code = np.searchsorted(ids, values).astype(np.int64) + 1
    code[values == 0] = 0
    joint = np.bincount((code * n_cls + classes).reshape(-1), minlength=(len(ids) + 1) * n_cls)
    joint = joint.reshape(len(ids) + 1, n_cls)
    by_raw = {s.id: s for s in seg.segments}
    void_raws = set(seg.dropped_ids)
    warnings = list(seg.warnings)
    base = n_cls  # instance raw ids start above every class raw id
    out = classes.astype(np.uint32)
    inst_raws = (base + np.arange(len(ids) + 1)).astype(np.uint32)
    inst_raws[0] = 0
    has_inst = code > 0
    out[has_inst] = inst_raws[code[has_inst]]
    instances: list[SegmentInfo] = []
    dropped: list[int] = []
    for j, value in enumerate(ids.tolist(), start=1):
        row = joint[j].copy()
        for raw in void_raws:
            if raw < n_cls:
                row[raw] = 0
        row[0] = 0
        if not row.any():
            warnings.append(f"instance {value} ({int(joint[j].sum())} px) lies on void pixels only; dropped")
            dropped.append(int(inst_raws[j]))
            continue
        major = int(row.argmax())
        cls = by_raw[major]
        others = [(int(row[r]), r) for r in np.flatnonzero(row).tolist() if r != major]
        if others:
            others.sort(reverse=True)
            named = ", ".join(f"{by_raw[r].label!r} {n} px" for n, r in others[:_MAX_NAMED])
            more = f" and {len(others) - _MAX_NAMED} more" if len(others) > _MAX_NAMED else ""
            warnings.append(
                f"instance {value} of {instance_path} lies on {cls.label!r} ({int(row[major])} px) and {named}"
                f"{more}; it is {cls.label!r} (the majority)"
            )
        meta = dict(cls.metadata)
        meta["instance"] = value
        instances.append(SegmentInfo(id=int(inst_raws[j]), label=cls.label, category_id=cls.category_id,
                                     isthing=True, metadata=meta))
    # class regions left outside every instance
    left = joint[0]
    regions = []
    for s in seg.segments:
        px = [r for r in s.pixels if r < n_cls and left[r] > 0]
        if not px:
            continue
        regions.append(SegmentInfo(id=s.id, label=s.label, category_id=s.category_id, isthing=False,
                                   iscrowd=s.isthing or s.iscrowd, metadata=dict(s.metadata),
                                   pixel_ids=tuple(px) if s.pixel_ids is not None else None))
    return Segmentation(seg.reference_id, out, regions + instances, source=seg.source,
                        dropped_ids=frozenset(seg.dropped_ids | set(dropped)), warnings=warnings)
