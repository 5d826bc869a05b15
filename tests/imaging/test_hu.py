"""HU conversion on real files nobody here wrote (pydicom test data, pydicom-data) and on edge cases."""

from __future__ import annotations

import copy
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, pixel_array

from triage.errors import ImagingError
from triage.imaging import AIR_HU, preprocess_file, to_hu, z_position
from triage.synth import make_study

warnings.filterwarnings("ignore", message=".*VR.*", category=UserWarning)


def read(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"test file {name} is missing (pydicom-data not installed?)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


# -- real CT files --------------------------------------------------------------------------------

CT_WITH_AIR = [
    "693_UNCR.dcm",  # explicit VR, 14 bits signed, PixelPaddingValue -2000
    "693_UNCI.dcm",
    "693_J2KR.dcm",  # JPEG 2000 lossless
    "693_J2KI.dcm",  # JPEG 2000 lossy
    "bad_sequence.dcm",  # JPEG lossless process 14, 12 bits unsigned
    "explicit_VR-UN.dcm",  # JPEG 2000, intercept 0, signed stored HU
    "J2K_pixelrep_mismatch.dcm",  # JPEG 2000 stream signedness differs from the header
]


@pytest.mark.parametrize("name", CT_WITH_AIR)
def test_real_ct_files_convert_to_plausible_hu(name):
    hu = to_hu(read(name))
    assert hu.dtype == np.float32 and hu.ndim == 2
    assert hu.min() >= AIR_HU
    air = np.mean(hu <= -900)
    soft = np.mean((hu >= -100) & (hu <= 100))
    assert air > 0.05, f"{name}: no air near -1000 HU"
    assert soft > 0.1, f"{name}: no soft tissue near 0..100 HU"
    assert hu.max() > 300, f"{name}: no bone"
    tissue = hu[(hu > -100) & (hu < 150)]
    assert -100 < np.median(tissue) < 100


def test_small_ct_crop_is_soft_tissue_and_bone():
    hu = to_hu(read("CT_small.dcm"))  # a 128 x 128 body crop without air
    assert hu.shape == (128, 128)
    assert 0 <= np.median(hu) <= 100
    assert hu.max() > 500


def test_jpeg2000_lossless_decodes_exactly_and_lossy_closely():
    np.testing.assert_array_equal(to_hu(read("693_J2KR.dcm")), to_hu(read("693_UNCR.dcm")))
    lossy, reference = to_hu(read("693_J2KI.dcm")), to_hu(read("693_UNCI.dcm"))
    assert np.mean(np.abs(lossy - reference)) < 20


def test_rle_decodes_exactly():
    np.testing.assert_array_equal(to_hu(read("MR_small_RLE.dcm")), to_hu(read("MR_small.dcm")))
    for frame in (0, 9):
        np.testing.assert_array_equal(to_hu(read("emri_small_RLE.dcm"), frame), to_hu(read("emri_small.dcm"), frame))


def test_big_endian_and_implicit_vr_decode_like_explicit_little_endian():
    reference = to_hu(read("MR_small.dcm"))
    np.testing.assert_array_equal(to_hu(read("MR_small_bigendian.dcm")), reference)
    np.testing.assert_array_equal(to_hu(read("MR_small_implicit.dcm")), reference)
    np.testing.assert_array_equal(to_hu(read("MR_small_expb.dcm")), reference)


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "slice.dcm"
    study = make_study(7, slices=1, rows=256, subtypes=("subdural",))
    study.datasets[0].save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("tool", "args"),
    [("dcmcjpeg", ["+e1"]), ("dcmcjpeg", ["+el"]), ("dcmcrle", []), ("dcmcjpls", ["+el"])],
    ids=["jpeg-lossless-p14", "jpeg-lossless", "rle", "jpeg-ls-lossless"],
)
def test_ct_compressed_by_dcmtk_decodes_to_the_same_hu(phantom_file, tmp_path, tool, args):
    assert shutil.which(tool), f"{tool} (Debian package dcmtk) is required"
    out = tmp_path / "compressed.dcm"
    subprocess.run([tool, *args, str(phantom_file), str(out)], check=True, capture_output=True)
    compressed = pydicom.dcmread(out)
    assert compressed.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(to_hu(compressed), to_hu(pydicom.dcmread(phantom_file)))


# -- photometric, bit depth, padding, modality LUT -------------------------------------------------


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm", "RG1_J2KR.dcm"])
def test_monochrome1_without_rescale_is_inverted(name):
    ds = read(name)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and "RescaleIntercept" not in ds
    raw = pixel_array(ds).astype(np.float32)
    expected = (2 ** ds.BitsStored - 1) - raw
    np.testing.assert_array_equal(to_hu(ds), np.maximum(expected, AIR_HU))


def test_monochrome1_with_a_rescale_keeps_its_hounsfield_units():
    ds = make_study(3, slices=1, rows=128).datasets[0]
    reference = to_hu(ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(to_hu(ds), reference)


def _with_pixels(ds: pydicom.Dataset, raw: np.ndarray, *, bits: int, signed: bool, intercept: float) -> pydicom.Dataset:
    ds = copy.deepcopy(ds)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    ds.RescaleIntercept, ds.RescaleSlope = intercept, 1
    ds.Rows, ds.Columns = raw.shape
    ds.PixelData = raw.astype("<i2" if signed else "<u2").tobytes()
    for key in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if key in ds:
            del ds[key]
    return ds


@pytest.fixture
def ct() -> pydicom.Dataset:
    return make_study(1, slices=1, rows=64).datasets[0]


def test_12_bit_unsigned_masks_the_unused_high_bits(ct):
    raw = np.array([[0, 1024, 1064, 4095]], dtype=np.uint16)
    garbage = raw | np.uint16(0xA000)  # bits above BitsStored must be ignored
    hu = to_hu(_with_pixels(ct, garbage, bits=12, signed=False, intercept=-1024))
    np.testing.assert_array_equal(hu, [[-1024, 0, 40, 3071]])


def test_12_bit_signed_is_sign_extended(ct):
    values = np.array([[-1024, -1, 40, 2047]], dtype=np.int16)
    stored = (values.astype(np.uint16) & np.uint16(0x0FFF)) | np.uint16(0x5000)  # junk above bit 11
    hu = to_hu(_with_pixels(ct, stored.view(np.int16), bits=12, signed=True, intercept=0))
    np.testing.assert_array_equal(hu, [[-1024, -1, 40, 2047]])


def test_rsna_12_bit_wrap_is_undone(ct):
    """RSNA 2019: 12 bits unsigned, intercept > -100, negative values stored wrapped past 4096."""
    hu_true = np.array([[-999, -400, -1, 0, 40, 1500, 3000]], dtype=np.float32)
    stored = np.mod(hu_true - 1, 4096).astype(np.uint16)
    np.testing.assert_array_equal(to_hu(_with_pixels(ct, stored, bits=12, signed=False, intercept=1)), hu_true)
    # the same stored values with the ordinary intercept are not touched
    plain = to_hu(_with_pixels(ct, stored, bits=12, signed=False, intercept=-1024))
    np.testing.assert_array_equal(plain, stored.astype(np.float32) - 1024)


def test_pixel_padding_value_and_range_become_air(ct):
    raw = np.array([[-2000, -1990, -1024, 1064]], dtype=np.int16)
    ds = _with_pixels(ct, raw, bits=16, signed=True, intercept=0)
    ds.PixelPaddingValue = -2000  # stored values; with intercept 0 these would be "HU" -2000
    np.testing.assert_array_equal(to_hu(ds), [[AIR_HU, AIR_HU, -1024, 1064]])
    ds = _with_pixels(ct, np.array([[5, 10, 11, 3000]], dtype=np.uint16), bits=16, signed=False, intercept=-1024)
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 10, 0
    np.testing.assert_array_equal(to_hu(ds), [[AIR_HU, AIR_HU, -1013, 1976]])


def test_common_fill_values_without_the_tag_become_air(ct):
    raw = np.array([[-2000, -3024, -1500, 0]], dtype=np.int16)
    hu = to_hu(_with_pixels(ct, raw, bits=16, signed=True, intercept=0))
    np.testing.assert_array_equal(hu, [[AIR_HU, AIR_HU, AIR_HU, 0]])


def test_modality_lut_sequence_is_applied():
    ds = read("mlut_18.dcm")
    assert "ModalityLUTSequence" in ds
    expected = apply_modality_lut(pixel_array(ds), ds).astype(np.float32)
    np.testing.assert_array_equal(to_hu(ds), expected)


def test_rescale_slope_is_applied(ct):
    ds = _with_pixels(ct, np.array([[0, 100, 2000]], dtype=np.uint16), bits=16, signed=False, intercept=-1000)
    ds.RescaleSlope = 0.5
    np.testing.assert_array_equal(to_hu(ds), [[-1000, -950, 0]])


# -- Enhanced CT ----------------------------------------------------------------------------------


def test_enhanced_ct_rescale_comes_from_the_functional_groups():
    ds = read("eCT_Supplemental.dcm")
    assert "RescaleIntercept" not in ds and int(ds.NumberOfFrames) == 2
    for frame in (0, 1):
        raw = pixel_array(ds, index=frame).astype(np.float32)
        np.testing.assert_array_equal(to_hu(ds, frame), np.maximum(raw - 1024, AIR_HU))
    assert to_hu(ds, 0).min() == -1024


def test_enhanced_ct_needs_a_valid_frame():
    ds = read("eCT_Supplemental.dcm")
    with pytest.raises(ImagingError, match="2 frames"):
        to_hu(ds)
    with pytest.raises(ImagingError, match="frame 5"):
        to_hu(ds, 5)


def test_enhanced_ct_frames_have_positions():
    ds = read("eCT_Supplemental.dcm")
    assert z_position(ds, 0) is not None and z_position(ds, 1) is not None
    assert z_position(ds, 0) != z_position(ds, 1)


# -- unusable data ---------------------------------------------------------------------------------


def test_truncated_pixel_data_raises_a_clear_error(tmp_path):
    data = Path(get_testdata_file("693_UNCR.dcm")).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(ImagingError, match=r"truncated\.dcm.*less than expected"):
        preprocess_file(path)
    with pytest.raises(ImagingError, match="less than expected"):
        to_hu(read("MR_truncated.dcm"))


def test_file_cut_in_the_header_raises_a_clear_error(tmp_path):
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    path = tmp_path / "header-only.dcm"
    path.write_bytes(data[:300])
    with pytest.raises(ImagingError, match=r"header-only\.dcm.*no Pixel Data"):
        preprocess_file(path)


def test_non_dicom_and_missing_files_raise_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a DICOM file\n")
    with pytest.raises(ImagingError, match=r"notes\.txt"):
        preprocess_file(text)
    with pytest.raises(ImagingError, match=r"absent\.dcm"):
        preprocess_file(tmp_path / "absent.dcm")


def test_colour_and_pixel_less_datasets_are_refused():
    with pytest.raises(ImagingError, match="SamplesPerPixel is 3"):
        to_hu(read("SC_rgb.dcm"))
    with pytest.raises(ImagingError, match="no Pixel Data"):
        to_hu(read("rtplan.dcm"))
