"""The one rule that turns a reference_id into a file name inside OUTPUT.

Every writer names its per-item files after the item's reference_id (Nucleus masks,
COCO panoptic PNGs, VOC class/object PNGs, YOLO label files, ...). A reference_id comes
from the source (a COCO ``file_name``, a LabelMe ``imagePath``, a CVAT ``name``) and is
not trusted: ``../x``, an absolute path, an empty name or a NUL would write outside
OUTPUT or fail in the OS. Rather than map such names to something else (two sources
could then meet in one file, and the mapping would be a second name users must learn),
segconvert *rejects* them: the item fails with the reason, the others convert. The
rule, for every writer alike:

- not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no NUL or other control character;
- no leading or trailing white space (invisible in listings, trimmed by some tools);
- at most ``MAX_NAME_BYTES`` bytes of UTF-8, so name + suffix + the temp-file decoration
  of :func:`segconvert.codecs.png.write_atomic` fit the 255-byte limit of common file systems;
- two reference_ids of one run may not differ only by case (or Unicode normalisation):
  on a case-insensitive disk (macOS, Windows) they would be one file, and the output
  must be the same on every disk, so the later item fails everywhere (:func:`name_key`).

The other direction, paths *read*: file names inside annotation files (a COCO
``file_name``, a LabelMe ``imagePath``, a CVAT ``name``) are relative to a documented
base folder, and :func:`resolve_inside` keeps them there: ``../../etc/x.png`` or an
absolute path fails the item unless the run allows it (``--allow-outside-paths``).
"""

from __future__ import annotations

import os
import re
import unicodedata

from segconvert.errors import ItemError, SourceError

_allow_outside = False

#: leaves room for ".png" or "_gtFine.png"-like suffixes and ".NAME.PID.N.tmp"
MAX_NAME_BYTES = 200


def output_stem(reference_id: str, *, source: str | None = None) -> str:
    """``reference_id`` as the stem of an output file name; ItemError when it cannot be one."""
    why = _unsafe(reference_id)
    if why is not None:
        raise ItemError(f"reference_id {reference_id!r} cannot be used as a file name: {why}",
                        item=reference_id, file=source)
    return reference_id


_CONTROL = re.compile("[\x00-\x1f\x7f]")  # once per item: a regex, not a generator over its characters


def _unsafe(ref: object) -> str | None:
    if not isinstance(ref, str):
        return "it is not a string"
    if not ref:
        return "it is empty"
    if ref in (".", ".."):
        return "it names a folder"
    if "/" in ref or "\\" in ref:
        return "it contains a path separator"
    if _CONTROL.search(ref) is not None:
        return "it contains a control character"
    if ref != ref.strip():
        return "it starts or ends with white space"
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (b"\xff.json" reads as "\udcff"):
        # no JSON writer, nor Nucleus, can carry it, and its output file would be named otherwise
        return "it is not valid UTF-8 (the source file's name is not UTF-8: rename it)"
    size = len(ref.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long (at most {MAX_NAME_BYTES})"
    return None


def name_key(reference_id: str) -> str:
    """What two reference_ids share when a case-insensitive disk would make them one file."""
    return unicodedata.normalize("NFC", reference_id).casefold()


def set_allow_outside(allow: bool) -> None:
    """This process' ``--allow-outside-paths`` (the pipeline sets it in every worker too)."""
    global _allow_outside
    _allow_outside = bool(allow)


def allow_outside() -> bool:
    return _allow_outside


def resolve_inside(base: str | os.PathLike[str], name: str, *, allow_outside: bool | None = None,
                   item: str | None = None, file: str | os.PathLike[str] | None = None) -> str:
    """``name`` (a relative path from an annotation file) joined to ``base``.

    ItemError when ``name`` is absolute or climbs out of ``base`` with ``..`` (checked on
    the text, so a symlinked image folder inside ``base`` still works), unless
    ``allow_outside`` (default: the run's ``--allow-outside-paths``). Also refused: an
    empty name, a NUL.
    """
    allowed = _allow_outside if allow_outside is None else allow_outside
    base = os.fspath(base)
    if not isinstance(name, str) or not name or "\0" in name:
        raise ItemError(f"file name {name!r} is not a usable path", item=item, file=file)
    if not allowed and climbs_out(name):
        raise ItemError(
            f"file name {name!r} leads outside {base}; file names are read relative to that folder "
            "(pass --allow-outside-paths if the annotation file is trusted)", item=item, file=file,
        )
    return os.path.join(base, name)


def require_dir(path: str | os.PathLike[str], what: str) -> None:
    """SourceError up front when a folder a reader needs (``--masks-dir``, the PNG folder
    beside a JSON) is missing or is a file: one message, instead of one failure per image.
    Object storage has no folders (a key prefix exists once an object is under it): a URL
    passes, and a missing object fails its own item."""
    if os.path.isdir(path) or "://" in os.fspath(path):
        return
    if os.path.exists(path):
        raise SourceError(f"is a file, but {what} must be a folder", file=path)
    raise SourceError(f"no such folder ({what})", file=path)


def climbs_out(name: str) -> bool:
    """Whether a relative file name from an annotation file is absolute or leads out with ``..``."""
    return os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == ".." or (
        len(name) > 1 and name[1] == ":")


def file_stem(name: str) -> str:
    """``PurePosixPath(name).stem``, computed without pathlib.

    Readers take every item's reference_id from a name in the annotation file (a CVAT
    ``name``, a Label Studio image URL), once per item. Before Python 3.12, pathlib
    interns every part of every path it parses, and the interpreter's table of interned
    strings never shrinks: measured at ~48 bytes per image on 20,000 names, more than
    the rest of a reader's memory per image. Same answer as pathlib: empty and ``.``
    parts are dropped, the last part's last suffix goes unless the dot starts or ends it.
    """
    parts = [p for p in name.split("/") if p and p != "."]
    last = parts[-1] if parts else ""
    dot = last.rfind(".")
    return last[:dot] if 0 < dot < len(last) - 1 else last
