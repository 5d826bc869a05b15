"""Pixel data of one CT image (or one frame) -> Hounsfield units, robust to real-world DICOM.

The steps, in order (docs/imaging.md explains each):

1. decode the stored values (pydicom: native or compressed; BitsStored masking and sign extension);
2. remember the padding pixels (PixelPaddingValue / PixelPaddingRangeLimit, in stored values);
3. undo the known RSNA 12-bit wrap (BitsStored 12, unsigned, RescaleIntercept > -100);
4. MONOCHROME1 without a modality transform: invert the stored values (see :func:`to_hu`);
5. modality LUT: Modality LUT Sequence, else RescaleSlope/Intercept from the top level or the
   Enhanced CT functional groups (per-frame before shared);
6. padding and anything below :data:`AIR_HU` (the -2000 / -3024 fills without the tag) -> air.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from triage.errors import ImagingError

LOGGER = logging.getLogger(__name__)

#: The value air, padding and anything below it become (HU). Real air is about -1000.
AIR_HU = -1024.0

#: RSNA 2019 wrap: values wrapped past 4096 that really are negative (stored + 1000 >= 4096).
RSNA_WRAP_BITS = 12
RSNA_WRAP_INTERCEPT = -100.0
RSNA_WRAP_SHIFT = 1000

#: Transfer syntaxes whose Pixel Data (once read) is raw little-endian samples.
NATIVE_LITTLE_ENDIAN = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian})
#: Upper clip of the HU array (keeps np.clip on its fast two-sided path).
HU_CEILING = np.float32(np.finfo(np.float32).max)


def to_hu(ds: Dataset, frame: int | None = None) -> np.ndarray:
    """Return one image (or one frame) of ``ds`` in Hounsfield units.

    Parameters
    ----------
    ds : pydicom.Dataset
        A greyscale image dataset with Pixel Data (native or compressed).
    frame : int or None
        Frame index for multi-frame objects (Enhanced CT); ``None`` for single-frame objects.

    Returns
    -------
    numpy.ndarray
        float32 array (Rows, Columns). Pixel padding and values below :data:`AIR_HU` are set to
        :data:`AIR_HU`.

    Raises
    ------
    triage.errors.ImagingError
        No pixel data, colour data, a truncated or undecodable pixel stream, a bad frame index.

    Notes
    -----
    MONOCHROME1 only changes how values are *displayed*: the modality LUT output keeps its
    meaning (PS3.3 C.7.6.3.1.2). So a MONOCHROME1 image with a rescale keeps its HU, and one
    without any modality transform (raw detector values) has its stored values inverted, so that
    higher always means denser.
    """
    _check_image(ds)
    index = _frame_index(ds, frame)
    raw = _decode(ds, index)
    padding = _padding_mask(ds, raw)
    raw = _unwrap_rsna(ds, raw)
    slope_intercept = _rescale(ds, index)
    has_lut = bool(ds.get("ModalityLUTSequence"))
    if ds.get("PhotometricInterpretation") == "MONOCHROME1" and slope_intercept is None and not has_lut:
        raw = _invert(ds, raw)
    hu = _apply_modality(ds, raw, slope_intercept, has_lut)
    if padding is not None:
        hu[padding] = AIR_HU
    np.clip(hu, np.float32(AIR_HU), HU_CEILING, out=hu)
    return hu


def number_of_frames(ds: Dataset) -> int:
    """Return NumberOfFrames (1 when absent or empty)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError) as exc:
        raise ImagingError(f"NumberOfFrames {ds.get('NumberOfFrames')!r} is not a number") from exc


def _check_image(ds: Dataset) -> None:
    if "PixelData" not in ds:
        kind = "FloatPixelData" if "FloatPixelData" in ds else "no Pixel Data element"
        raise ImagingError(f"the dataset has {kind}; expected integer Pixel Data (7FE0,0010)")
    for key in ("Rows", "Columns", "BitsAllocated"):
        if not ds.get(key):
            raise ImagingError(f"the dataset has no usable {key} ({ds.get(key)!r}); cannot decode its pixels")
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1:
        raise ImagingError(
            f"SamplesPerPixel is {samples} (photometric {ds.get('PhotometricInterpretation')!r}); "
            "expected one greyscale sample"
        )
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        raise ImagingError("the dataset has no Transfer Syntax UID in its file meta; cannot decode its pixels")


def _frame_index(ds: Dataset, frame: int | None) -> int | None:
    frames = number_of_frames(ds)
    if frame is None:
        if frames > 1:
            raise ImagingError(f"the dataset has {frames} frames; pass frame=0..{frames - 1}")
        return None
    if not 0 <= frame < frames:
        raise ImagingError(f"frame {frame!r} is out of range; the dataset has {frames} frame(s)")
    return frame if frames > 1 else None


def _decode(ds: Dataset, index: int | None) -> np.ndarray:
    """Stored values as a signed integer array (masked to BitsStored, sign extended)."""
    native = _decode_native(ds, index)
    if native is not None:
        return native
    try:
        arr = pixel_array(ds, index=index)
    except Exception as exc:  # pydicom raises ValueError, RuntimeError, NotImplementedError...
        raise ImagingError(f"cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        raise ImagingError(f"decoded pixel data has shape {arr.shape}; expected one 2-D greyscale image")
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    if arr.dtype.itemsize >= 4:
        return arr.astype(np.int64)
    return arr.astype(np.int32)


def _decode_native(ds: Dataset, index: int | None) -> np.ndarray | None:
    """Fast path for the common case, 16-bit greyscale little-endian native data; None otherwise.

    Reads the samples straight from the Pixel Data bytes (what pydicom does, without its
    decoder set-up, which costs more than the rest of the HU conversion).
    """
    if ds.file_meta.TransferSyntaxUID not in NATIVE_LITTLE_ENDIAN or int(ds.BitsAllocated) != 16:
        return None
    data = ds.PixelData
    rows, cols = int(ds.Rows), int(ds.Columns)
    count = rows * cols
    offset = (index or 0) * count * 2
    if len(data) < offset + count * 2:
        raise ImagingError(
            f"the pixel data is less than expected ({len(data)} bytes, need {offset + count * 2} for "
            f"{rows}x{cols} 16-bit frame {index or 0}); the file is truncated or its header is wrong"
        )
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    raw = np.frombuffer(data, dtype="<i2" if signed else "<u2", count=count, offset=offset).reshape(rows, cols)
    bits = int(ds.get("BitsStored") or 16)
    if bits < 16:
        shift = 16 - bits
        if signed:
            raw = (raw << shift) >> shift  # drop the bits above BitsStored, then sign-extend
        else:
            raw = raw & np.uint16((1 << bits) - 1)
    return raw


def _stored_int(ds: Dataset, key: str) -> int | None:
    value = ds.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bytes):  # US or SS decided by PixelRepresentation, sometimes left raw
        dtype = "<i2" if int(ds.get("PixelRepresentation") or 0) else "<u2"
        return int(np.frombuffer(value[:2], dtype=dtype)[0])
    if isinstance(value, list | tuple):
        value = value[0]
    return int(value)


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray | None:
    pad = _stored_int(ds, "PixelPaddingValue")
    if pad is None:
        return None
    limit = _stored_int(ds, "PixelPaddingRangeLimit")
    if raw.dtype.kind in "ui" and raw.dtype.itemsize < 8:
        raw = raw.astype(np.int64)  # the padding value may lie outside the stored dtype
    if limit is None:
        return raw == pad
    low, high = min(pad, limit), max(pad, limit)
    return (raw >= low) & (raw <= high)


def _unwrap_rsna(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """The RSNA 2019 fix: 12-bit unsigned data whose negative values wrapped past 4096."""
    if raw.dtype.kind == "f" or ds.get("ModalityLUTSequence"):
        return raw
    if int(ds.get("BitsStored") or 0) != RSNA_WRAP_BITS or int(ds.get("PixelRepresentation") or 0) != 0:
        return raw
    intercept = ds.get("RescaleIntercept")
    if intercept is None or float(intercept) <= RSNA_WRAP_INTERCEPT:
        return raw
    LOGGER.debug("undoing the RSNA 12-bit wrap (intercept %s)", intercept)
    wrap = 1 << RSNA_WRAP_BITS
    wide = raw.astype(np.int32)
    return np.where(wide + RSNA_WRAP_SHIFT >= wrap, wide - wrap, wide)


def _rescale(ds: Dataset, index: int | None) -> tuple[float, float] | None:
    """(slope, intercept) from the top level, else the per-frame, else the shared functional groups."""
    sources: list[Any] = [ds]
    frame = index or 0
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        sources.append(_first(per_frame[frame].get("PixelValueTransformationSequence")))
    sources.append(_first(ds.get("SharedFunctionalGroupsSequence"), "PixelValueTransformationSequence"))
    for source in sources:
        if source is not None and source.get("RescaleIntercept") is not None:
            slope = source.get("RescaleSlope")
            try:
                return (1.0 if slope in (None, "") else float(slope)), float(source.RescaleIntercept)
            except (TypeError, ValueError) as exc:
                raise ImagingError(
                    f"RescaleSlope {slope!r} / RescaleIntercept {source.RescaleIntercept!r} are not numbers"
                ) from exc
    return None


def _first(seq: Any, key: str | None = None) -> Any:
    """First item of a sequence (or of ``item[key]``), or None."""
    if not seq:
        return None
    item = seq[0]
    return item if key is None else _first(item.get(key))


def _invert(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """MONOCHROME1 stored values -> MONOCHROME2 (within the BitsStored range)."""
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    if int(ds.get("PixelRepresentation") or 0):
        return -1 - raw
    return ((1 << bits) - 1) - raw


def _apply_modality(
    ds: Dataset, raw: np.ndarray, slope_intercept: tuple[float, float] | None, has_lut: bool
) -> np.ndarray:
    if has_lut:
        try:
            return np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
        except Exception as exc:
            raise ImagingError(f"cannot apply the Modality LUT Sequence ({type(exc).__name__}: {exc})") from exc
    hu = raw.astype(np.float32)  # a copy: the caller may change it
    if slope_intercept is None:
        return hu
    slope, intercept = slope_intercept
    if slope != 1.0:
        hu *= np.float32(slope)
    if intercept != 0.0:
        hu += np.float32(intercept)
    return hu
