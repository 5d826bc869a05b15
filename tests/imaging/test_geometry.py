"""Crop / pad / resize / max-pool, slice order, and the whole preprocessing of a slice."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage.errors import ImagingError
from triage.imaging import (
    AIR_HU,
    fit_to_size,
    max_pool2,
    preprocess,
    preprocess_file,
    preprocess_hu,
    resize,
    slice_order,
    to_hu,
    window_stack,
    z_position,
)
from triage.synth import make_study


def test_512_is_center_cropped_to_448():
    image = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    np.testing.assert_array_equal(fit_to_size(image, 448), image[32:480, 32:480])


def test_non_square_is_cropped_and_padded_with_air():
    image = np.ones((512, 440), dtype=np.float32)
    out = fit_to_size(image, 448)
    assert out.shape == (448, 448)
    np.testing.assert_array_equal(out[:, 4:444], 1.0)
    np.testing.assert_array_equal(out[:, :4], AIR_HU)
    np.testing.assert_array_equal(out[:, 444:], AIR_HU)


def test_channels_get_their_own_fill_value():
    out = fit_to_size(np.zeros((2, 460, 440), dtype=np.float32), 448, fill=[7.0, 9.0])
    assert out.shape == (2, 448, 448)
    assert out[0, 0, 0] == 7.0 and out[1, 0, 0] == 9.0 and out[1, 224, 224] == 0.0
    with pytest.raises(ImagingError, match="2 values for 3 channels"):
        fit_to_size(np.zeros((3, 448, 448)), 448, fill=[1.0, 2.0])


@pytest.mark.parametrize(("size", "expected_scale"), [(1024, 0.5), (128, 4.0), (256, 2.0), (600, 512 / 600)])
def test_other_sizes_are_resized_to_the_512_field_of_view(size, expected_scale):
    image = np.full((size, size), 40.0, dtype=np.float32)
    image[size // 2 - size // 8 : size // 2 + size // 8, :] = 100.0  # a band a quarter of the height
    out = fit_to_size(image, 448)
    assert out.shape == (448, 448)
    band_rows = np.count_nonzero(out[:, 224] > 70)
    assert band_rows == pytest.approx(size / 4 * expected_scale, abs=2)


def test_resize_keeps_constants_and_the_mean():
    flat = np.full((3, 100, 80), 5.0, dtype=np.float32)
    np.testing.assert_allclose(resize(flat, (50, 40)), 5.0, rtol=1e-6)
    rng = np.random.default_rng(0)
    noise = rng.random((64, 64)).astype(np.float32)
    assert resize(noise, (32, 32)).mean() == pytest.approx(noise.mean(), abs=0.01)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31))
def test_max_pool_matches_a_reshape_reference(h, w, seed):
    image = np.random.default_rng(seed).normal(size=(2, 2 * h, 2 * w)).astype(np.float32)
    expected = image.reshape(2, h, 2, w, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(max_pool2(image), expected)


def test_max_pool_needs_even_sides():
    with pytest.raises(ImagingError, match="even"):
        max_pool2(np.zeros((3, 5)))


# -- slice order -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tilted_study():
    for seed in range(100):
        study = make_study(seed, slices=6, rows=64)
        if float(study.datasets[0].GantryDetectorTilt) > 0:
            return study
    raise AssertionError("no tilted phantom in 100 seeds")


def test_slices_are_ordered_by_position_on_the_normal_with_gantry_tilt(tilted_study):
    datasets = [copy.deepcopy(ds) for ds in tilted_study.datasets]
    z = [z_position(ds) for ds in datasets]
    assert all(v is not None for v in z)
    shuffled = datasets[:]
    random.Random(4).shuffle(shuffled)
    for ds in shuffled:
        del ds.InstanceNumber  # position only
    order = slice_order(shuffled)
    positions = [z_position(shuffled[i]) for i in order]
    assert positions == sorted(positions)
    steps = np.diff(positions)
    np.testing.assert_allclose(steps, 5.0, atol=0.01)  # slice spacing along the tilted normal
    # raw patient z alone would give 5 * cos(tilt), not the true spacing
    raw_z = sorted(float(ds.ImagePositionPatient[2]) for ds in datasets)
    assert abs(np.diff(raw_z)[0]) < 5.0 - 0.01


def test_instance_number_is_the_fallback(tilted_study):
    datasets = [copy.deepcopy(ds) for ds in tilted_study.datasets]
    for number, ds in zip([3, 1, 2, 6, 5, 4], datasets, strict=True):
        ds.InstanceNumber = number
    del datasets[2].ImagePositionPatient
    assert [datasets[i].InstanceNumber for i in slice_order(datasets)] == [1, 2, 3, 4, 5, 6]
    assert z_position(datasets[2]) is None


def test_without_positions_or_numbers_the_given_order_is_kept(tilted_study):
    datasets = [copy.deepcopy(ds) for ds in tilted_study.datasets[:3]]
    for ds in datasets:
        del ds.ImagePositionPatient
        del ds.InstanceNumber
    assert slice_order(datasets) == [0, 1, 2]
    assert slice_order([]) == []


def test_degenerate_orientation_gives_no_position(tilted_study):
    ds = copy.deepcopy(tilted_study.datasets[0])
    ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    assert z_position(ds) is None


# -- whole pipeline --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom():
    return make_study(11, slices=3, subtypes=("intraparenchymal",))


@pytest.mark.parametrize("windowing", ["sigmoid", "linear"])
def test_phantom_preprocesses_to_the_paper_shapes(phantom, windowing):
    ds = phantom.datasets[1]
    big = preprocess(ds, 448, windowing)
    small = preprocess(ds, 224, windowing)
    assert big.shape == (3, 448, 448) and small.shape == (3, 224, 224)
    assert big.dtype == small.dtype == np.float32
    assert 0.0 <= big.min() and big.max() <= 1.0
    # reference order of the paper: window the whole slice, stack, crop, (max-pool)
    reference = window_stack(to_hu(ds), windowing)[:, 32:480, 32:480]
    np.testing.assert_array_equal(big, reference)
    np.testing.assert_array_equal(small, max_pool2(reference))


def test_preprocess_file_reads_the_file(phantom, tmp_path):
    path = tmp_path / "slice.dcm"
    phantom.datasets[0].save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(preprocess_file(path, 224), preprocess(phantom.datasets[0], 224))


def test_invalid_parameters_are_refused(phantom):
    with pytest.raises(ImagingError, match="image_size 300"):
        preprocess(phantom.datasets[0], 300)
    with pytest.raises(ImagingError, match="'cubic'"):
        preprocess_hu(np.zeros((512, 512)), 448, "cubic")
