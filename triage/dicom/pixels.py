"""Whether a received data set carries complete pixel data, judged from its encoded bytes (no decoding).

The header is read with ``stop_before_pixels``; this module looks at the element that follows: is it
pixel data, and is all of it there (a native value as long as Rows x Columns x samples x bytes x
frames, an encapsulated value closed by its sequence delimiter)?
"""

from __future__ import annotations

import struct

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
UNDEFINED_LENGTH = 0xFFFFFFFF
#: VRs whose explicit-VR element header has a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def problem_at(data: bytes, offset: int, ds: Dataset, transfer_syntax_uid: str) -> tuple[str, str] | None:
    """Why the pixel data at ``offset`` of ``data`` is unusable, as ``(reason, detail)``, or None when it is fine.

    Parameters
    ----------
    data
        The encoded instance.
    offset
        Where reading the header with ``stop_before_pixels`` stopped.
    ds
        That header (for the expected size of native pixel data).
    transfer_syntax_uid
        The transfer syntax of ``data``'s data set.
    """
    element = _element_header(data, offset, transfer_syntax_uid)
    if element is None or element[0] not in PIXEL_TAGS:
        return "no_pixel_data", "the data set has no pixel data"
    _, header_length, length = element
    start = offset + header_length
    if length == UNDEFINED_LENGTH:
        if data.find(_SEQUENCE_DELIMITER, start) < 0:
            return "truncated", "the encapsulated pixel data has no end (truncated)"
        return None
    if start + length > len(data):
        return "truncated", f"pixel data of {length} bytes, only {len(data) - start} received (truncated)"
    expected = native_length(ds)
    if expected is not None and length < expected:
        return "truncated", f"pixel data of {length} bytes, {expected} expected from the image size"
    return None


def problem_in(ds: Dataset) -> tuple[str, str] | None:
    """Like :func:`problem_at`, for a data set that was read completely (deflated transfer syntax)."""
    values = [ds[tag].value for tag in PIXEL_TAGS if tag in ds]
    if not values or values[0] is None:
        return "no_pixel_data", "the data set has no pixel data"
    expected = native_length(ds)
    if expected is not None and len(values[0]) < expected:
        return "truncated", f"pixel data of {len(values[0])} bytes, {expected} expected from the image size"
    return None


def native_length(ds: Dataset) -> int | None:
    """Bytes of native (uncompressed) pixel data that the image attributes call for, or None if unknown."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits < 8:
        return None
    return rows * columns * samples * (bits // 8) * frames


def _element_header(data: bytes, offset: int, transfer_syntax_uid: str) -> tuple[int, int, int] | None:
    """``(tag, header length, value length)`` of the element at ``offset``, or None past the end."""
    if len(data) < offset + 8:
        return None
    endian = ">" if transfer_syntax_uid == ExplicitVRBigEndian else "<"
    group, elem = struct.unpack_from(endian + "HH", data, offset)
    tag = group << 16 | elem
    if transfer_syntax_uid == ImplicitVRLittleEndian:
        return tag, 8, struct.unpack_from("<I", data, offset + 4)[0]
    if data[offset + 4 : offset + 6] in _LONG_VRS:
        if len(data) < offset + 12:
            return None
        return tag, 12, struct.unpack_from(endian + "I", data, offset + 8)[0]
    return tag, 8, struct.unpack_from(endian + "H", data, offset + 6)[0]
