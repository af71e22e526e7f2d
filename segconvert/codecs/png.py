"""PNG helpers: header checks, fast decode, the fastest uint8 encode, atomic writes.

Decoding goes through OpenCV (the fastest general decoder installed with the core
dependencies). Encoding the single-channel index mask uses a minimal PNG writer: one
IDAT, filter type "None", deflate at level 1 — by ``isal`` when it is installed
(≈3× faster than zlib here), else zlib. Masks are runs of a few values, so level 1 is
within a few per cent of Pillow's level 6 in size at a fraction of the time.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np

from segconvert.codecs import limits
from segconvert.codecs.lut import PairRuns
from segconvert.codecs.opencv import cv2

try:  # optional accelerator: libspng decodes 8-bit RGB ~1.5x faster than OpenCV here
    import pyspng as _pyspng
except ImportError:  # pragma: no cover - depends on the environment
    _pyspng = None

try:  # optional accelerator: same bytes format, faster deflate
    from isal import isal_zlib as _deflate_lib
except ImportError:  # pragma: no cover - depends on the environment
    _deflate_lib = zlib  # type: ignore[assignment]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def description(self) -> str:
        return f"{self.bit_depth}-bit {COLOR_TYPES.get(self.color_type, f'color type {self.color_type}')}"


def read_header(data: bytes) -> PngHeader:
    """Parse the IHDR chunk; ValueError if ``data`` is not a PNG."""
    if len(data) < 33 or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        kind = "a JPEG" if data[:3] == b"\xff\xd8\xff" else "not a PNG"
        raise ValueError(f"file is {kind} (no PNG signature)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    return PngHeader(width, height, bit_depth, color_type)


def check_size(data: bytes | bytearray | np.ndarray) -> None:
    """ItemError (from :func:`segconvert.codecs.limits.check_pixels`) when the image the bytes
    declare is over ``--max-pixels``: checked on the header, before anything is decoded.
    A PNG's IHDR costs nothing to read; other formats are sized by Pillow's header parser."""
    head = bytes(data[:33])
    if head[:8] == SIGNATURE and head[12:16] == b"IHDR" and len(head) == 33:
        width, height = struct.unpack(">II", head[16:24])
        limits.check_pixels(width, height)
    elif len(data):
        try:
            limits.image_size(bytes(data))
        except ValueError:  # not an image Pillow knows: the decoder will say so
            pass


def decode(data: bytes | np.ndarray) -> np.ndarray:
    """Decode PNG (or any OpenCV-readable image) bytes as stored: BGR(A) order, any depth.

    The declared size is checked against ``--max-pixels`` first (ItemError when over);
    ValueError when OpenCV cannot decode it (truncated or corrupt file).
    """
    check_size(data)
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    img = cv2().imdecode(buf, cv2().IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("the image data is corrupt or truncated and cannot be decoded")
    return img


def decode_rgb8(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB PNG (check the header first) to an (H, W, 3) array in RGB order.

    ItemError when the size is over ``--max-pixels``, ValueError when the data is corrupt."""
    check_size(data)
    if _pyspng is not None:
        try:
            return _pyspng.load(data)
        except RuntimeError as exc:
            raise ValueError(f"the PNG data is corrupt or truncated ({exc})") from None
    return cv2().cvtColor(decode(data), cv2().COLOR_BGR2RGB)


def rgb_to_id24(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic id per pixel, R + 256·G + 256²·B (panopticapi's ``rgb2id``), as uint32.

    One cvtColor into an RGBA buffer, viewed as little-endian uint32 and masked to 24
    bits: ~0.1 ms for 640×480 instead of three widening multiplies (~2 ms). The result
    is a view of a fresh buffer (strided, no copy): never shared with another image.
    """
    h, w = rgb.shape[:2]
    rgba = cv2().cvtColor(rgb, cv2().COLOR_RGB2RGBA, dst=np.empty((h, w, 4), np.uint8))
    ids = rgba.view("<u4").reshape(h, w)
    np.bitwise_and(ids, 0xFFFFFF, out=ids)
    return ids


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    """zlib's CRC-32 of ``data`` (the same number), by ISA-L where installed: several times
    faster on the kilobytes of a PNG, which the journal stamps every output file with."""
    return _deflate_lib.crc32(data, value)


def _chunk(tag: bytes, payload: bytes) -> bytes:
    # the CRC of the IDAT runs over every compressed byte: ISA-L's crc32 (same value as zlib's)
    # is several times faster there
    crc = _deflate_lib.crc32(payload, _deflate_lib.crc32(tag))
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def encode_gray8(mask: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale PNG (Pillow mode ``L``)."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 mask, got {mask.dtype} {mask.shape}")
    h, w = mask.shape
    raw = np.empty((h, w + 1), np.uint8)
    raw[:, 0] = 0  # filter type None on every row
    raw[:, 1:] = mask
    idat = _deflate_lib.compress(raw, 1)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_palette8(mask: np.ndarray, palette: bytes) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit palette PNG (Pillow mode ``P``; Pascal VOC's masks).

    ``palette`` is the PLTE payload: 3 bytes (R, G, B) per entry, at most 256 entries.
    Same minimal writer as :func:`encode_gray8`, plus the PLTE chunk.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 mask, got {mask.dtype} {mask.shape}")
    if not 3 <= len(palette) <= 768 or len(palette) % 3:
        raise ValueError(f"a PNG palette has 1 to 256 RGB entries, got {len(palette)} bytes")
    h, w = mask.shape
    raw = np.empty((h, w + 1), np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = mask
    idat = _deflate_lib.compress(raw, 1)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", bytes(palette)) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file, in 5 system calls where ``Path.read_bytes`` makes 9 (an isatty ioctl,
    two lseeks and a second fstat); this runs once per image. OSError as ``open`` raises it.
    A ``scheme://`` URL (s3://, gs://, memory://...) is read through fsspec instead."""
    if "://" in (path if isinstance(path, str) else (path := os.fspath(path))):
        from segconvert.io import sources

        if sources.is_url(path):
            return sources.read_bytes(path)
    fd = os.open(path, os.O_RDONLY)  # non-inheritable, as every fd Python opens (PEP 446)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]  # +1: a file that grew since fstat is read to its end
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> float:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half; the
    seconds its system calls took (what the write-behind judges the file system by).

    The temp file sits in the same folder (so ``os.replace`` is a rename on one file
    system) and is created with O_EXCL under a name with this process' id and a counter,
    so parallel workers never collide and a stale temp file of a killed run is never
    reused (the next name is tried). The C kernel makes the four system calls with the GIL
    released once (``_kernels.write_replace``); without it, plain ``os`` calls: this runs
    once per image, and pathlib + ``secrets`` + a file object cost 0.05 ms of the 0.2 that
    the write costs.
    """
    path = os.fspath(path)
    head, name = os.path.split(path)
    payload = data.encode() if isinstance(data, str) else data
    if _write_replace_c is not None:
        while True:
            try:
                return _write_replace_c(_temp_path(head, name), path, payload) / 1e9
            except FileExistsError:
                continue
    start = time.perf_counter()
    while True:
        tmp = _temp_path(head, name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as umask allows
            break
        except FileExistsError:
            continue
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return time.perf_counter() - start


_temp_counter = itertools.count()


def _temp_path(head: str, name: str) -> str:
    """The next temp file name for ``name`` in folder ``head``: this process' id and a counter
    (``OutputStore.remove_stale_temps`` knows the pattern)."""
    return os.path.join(head, f".{name}.{os.getpid()}.{next(_temp_counter)}.tmp")


def _encode_raw(rows: np.ndarray, width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """One IDAT of filter-None rows (``rows``: (H, row bytes) uint8), deflated at level 1."""
    raw = np.empty((height, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = rows
    return encode_rows(raw, width, height, bit_depth, color_type)


def encode_rows(raw: np.ndarray | bytes | memoryview, width: int, height: int, bit_depth: int,
                color_type: int) -> bytes:
    """The PNG of ``raw``, the IDAT's rows as they are (each a filter-type byte, then the row's
    bytes), deflated at level 1. For writers whose C kernels write their values straight into
    the rows (``lut.lookup_u8(..., png_rows=True)``), which saves the copy into a padded buffer."""
    idat = _deflate_lib.compress(raw, 1)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_rgb8(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array (R, G, B order) as an 8-bit RGB PNG, as encode_gray8 does."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    return _encode_raw(rgb.reshape(h, w * 3), w, h, 8, 2)


def encode_gray16(mask: np.ndarray) -> bytes:
    """Encode a 2-D uint16 array as a 16-bit grayscale PNG (big-endian samples, as PNG stores them)."""
    if mask.ndim != 2 or mask.dtype != np.uint16:
        raise ValueError(f"expected a 2-D uint16 mask, got {mask.dtype} {mask.shape}")
    h, w = mask.shape
    return _encode_raw(mask.astype(">u2").view(np.uint8).reshape(h, w * 2), w, h, 16, 0)


def decode_gray8(data: bytes) -> np.ndarray:
    """Decode an 8-bit grayscale PNG (check the header first) to an (H, W) uint8 array
    (libspng where installed: 0.4 ms for a 640x480 mask where OpenCV takes 0.55; a mask
    with filter type None on every row, as :func:`encode_gray8` writes them, is inflated
    by ISA-L directly: ~0.22 ms where libspng takes ~0.3)."""
    if _deflate_lib is not zlib:
        mask = _decode_gray8_unfiltered(data)
        if mask is not None:
            return mask
    if _pyspng is not None:
        try:
            out = _pyspng.load(data)
        except RuntimeError as exc:
            raise ValueError(f"the PNG data is corrupt or truncated ({exc})") from None
        return out[..., 0] if out.ndim == 3 else out
    return decode(data)


try:  # the C kernel that undoes the row filters (setup.py builds it where a compiler is available)
    from segconvert.codecs._kernels import png_unfilter8 as _unfilter8_c
except ImportError:  # pragma: no cover - depends on the build
    _unfilter8_c = None
try:  # POSIX builds: write_atomic's system calls in one GIL release (the write-behind thread's)
    from segconvert.codecs._kernels import write_replace as _write_replace_c
except ImportError:  # pragma: no cover - depends on the build
    _write_replace_c = None
try:  # newer: a .so built before it lacks it (decode_index8_pairs then returns None)
    from segconvert.codecs._kernels import png_unfilter8_pairs as _unfilter8_pairs_c
except ImportError:  # pragma: no cover - depends on the build
    _unfilter8_pairs_c = None


def decode_index8(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """An 8-bit palette or grayscale PNG's stored values as an (H, W) uint8 array (palette
    indices, not colours), and the pixel count of every value (256 int64).

    Pascal VOC's masks are palette PNGs, and no fast decoder returns their indices: libspng
    and OpenCV expand them to RGB, Pillow's decoder costs ~0.4 ms of object overhead per
    image. Here the IDAT stream is inflated in one call (ISA-L where installed) and the C
    kernel undoes the row filters and counts the values in one pass: ~0.35 ms for a
    640x480 VOC mask where Pillow takes ~0.9. Chunk CRCs and the zlib checksum are checked.

    None when this decoder does not apply (another bit depth or colour type, interlaced,
    or no C kernel): decode with Pillow then. ValueError for a corrupt or truncated file.
    """
    inflated = _inflate_index8(data)
    if inflated is None:
        return None
    raw, width, height = inflated
    out = np.empty((height, width), np.uint8)
    counts = np.zeros(256, np.int64)
    _unfilter8_c(raw, width, out, counts)
    return out, counts


def decode_index8_pairs(data: bytes, low: np.ndarray) -> tuple[np.ndarray, PairRuns] | None:
    """:func:`decode_index8`'s values and ``lut.PairRuns(values, low)``, in one pass: each row
    is scanned for the runs of (value, ``low``) pairs as soon as it is unfiltered (the C
    kernel), instead of a second pass over both maps after decoding. Pascal VOC's object PNG
    with its class map as ``low``: ~0.03 ms less per 640x480 image, and the object map's own
    value counts, which the pairs make redundant, are not made.

    None where :func:`decode_index8` does not apply, or the fused kernel is not built (decode,
    then ``PairRuns``: the same results), or ``low`` is not of the image's size (C-contiguous
    uint8; the caller names the mismatch). ValueError as :func:`decode_index8` raises it."""
    if _unfilter8_pairs_c is None:
        return None
    inflated = _inflate_index8(data)
    if inflated is None:
        return None
    raw, width, height = inflated
    if low.shape != (height, width) or low.dtype != np.uint8 or not low.flags.c_contiguous:
        return None
    out = np.empty((height, width), np.uint8)

    def scan(hist: np.ndarray, keys: np.ndarray, starts: np.ndarray) -> tuple[list[int], list[int], int]:
        return _unfilter8_pairs_c(raw, width, out, low, hist, keys, starts)  # type: ignore[no-any-return]

    return out, PairRuns.scanning(out, low, scan)


def _inflate_index8(data: bytes) -> tuple[memoryview, int, int] | None:
    """The inflated IDAT rows (filter byte + row, H x (W + 1) bytes), width and height of an
    8-bit palette or grayscale non-interlaced PNG; None for any other PNG, or without the C
    kernel that unfilters them. ValueError for a corrupt or truncated file."""
    if _unfilter8_c is None:
        return None
    header = read_header(data)
    if header.bit_depth != 8 or header.color_type not in (0, 3) or data[28] != 0:  # data[28]: interlace
        return None
    if data[26] != 0 or data[27] != 0:
        raise ValueError(f"PNG compression method {data[26]} / filter method {data[27]}: only 0 exists")
    width, height = header.width, header.height
    if width == 0 or height == 0:
        raise ValueError(f"PNG size {width}x{height} is empty")
    pos, end = 8, len(data)
    view = memoryview(data)  # the IDAT payloads as views: no copy of the compressed stream
    idat: list[memoryview] = []
    while True:
        if pos + 12 > end:
            raise ValueError("the PNG data is truncated (no IEND chunk)")
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            raise ValueError(f"the PNG data is truncated (in a {kind.decode('latin-1')!r} chunk)")
        if kind == b"IDAT":
            payload = view[pos + 8:stop]
            # ISA-L's crc32 where installed: the same value, several times faster than zlib's
            if _deflate_lib.crc32(payload, _IDAT_CRC) != int.from_bytes(data[stop:stop + 4], "big"):
                raise ValueError("the PNG data is corrupt (bad IDAT checksum)")
            idat.append(payload)
        elif kind == b"IEND":
            break
        pos = stop + 4
    expected = height * (width + 1)
    try:
        raw = _deflate_lib.decompress(idat[0] if len(idat) == 1 else b"".join(idat), 15, expected + 1)
    except Exception as exc:  # zlib.error / isal_zlib.error: both subclass only Exception
        raise ValueError(f"the PNG data is corrupt or truncated ({exc})") from None
    if len(raw) < expected:
        raise ValueError(f"the PNG data is truncated ({len(raw)} of {expected} bytes of image data)")
    return memoryview(raw)[:expected], width, height


_IDAT_CRC = zlib.crc32(b"IDAT")
def _decode_gray8_unfiltered(data: bytes) -> np.ndarray | None:
    """An 8-bit grayscale, non-interlaced PNG whose rows all have filter type None, decoded;
    None for any other PNG, and for anything irregular (a bad CRC, a truncated or corrupt
    stream, a size that does not add up), which the general decoder then decodes or
    rejects with its own message. Every chunk's CRC and the zlib stream's Adler-32 are
    checked, as libspng checks them."""
    crc32 = _deflate_lib.crc32
    if len(data) < 45 or data[:8] != SIGNATURE or data[12:16] != b"IHDR" or data[8:12] != b"\0\0\0\r":
        return None
    width, height, bit_depth, color_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if (bit_depth, color_type, compression, filtering, interlace) != (8, 0, 0, 0, 0) or not width or not height:
        return None
    if crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None
    view = memoryview(data)
    parts: list[memoryview] = []
    pos, end, previous = 33, len(data), b"IHDR"
    while True:
        if pos + 12 > end:
            return None  # no IEND
        size = int.from_bytes(data[pos:pos + 4], "big")
        tag = data[pos + 4:pos + 8]
        stop = pos + 8 + size
        if stop + 4 > end or crc32(view[pos + 4:stop]) != int.from_bytes(data[stop:stop + 4], "big"):
            return None
        if tag == b"IDAT":
            if parts and previous != b"IDAT":  # IDAT chunks must be consecutive
                return None
            parts.append(view[pos + 8:stop])
        elif tag == b"IEND":
            break
        elif tag[0] & 0x20 == 0:  # another critical chunk (PLTE, a second IHDR, ...)
            return None
        previous = tag
        pos = stop + 4
    if not parts:
        return None
    expected = height * (width + 1)
    stream = _deflate_lib.decompressobj()
    try:  # never more than the image holds (+1 to see a longer stream): a "bomb" costs nothing
        raw = stream.decompress(parts[0] if len(parts) == 1 else b"".join(parts), expected + 1)
    except Exception:  # noqa: BLE001 - isal and zlib raise their own error types
        return None
    if len(raw) != expected or not stream.eof:  # short, long or unfinished (Adler-32 unchecked)
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():  # a row with a filter: the general decoder undoes it
        return None
    return np.ascontiguousarray(rows[:, 1:])
