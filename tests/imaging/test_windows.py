"""Windows: property tests against the formula of the seed paper (DESIGN.md section 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from triage.errors import ImagingError
from triage.imaging import (
    WINDOWS,
    linear_window,
    max_pool2,
    sigmoid_reference,
    sigmoid_window,
    window_fill,
    window_stack,
)

levels = st.floats(-1000, 1500)
widths = st.floats(1.0, 4000)
hus = st.floats(-3024, 4000, width=32)
uppers = st.floats(0.5, 4.0)
epsilons = st.floats(1e-4, 0.2)
hu_arrays = arrays(np.float32, st.tuples(st.integers(1, 16), st.integers(1, 16)), elements=hus)


@given(level=levels, width=widths, a=hus, b=hus, upper=uppers, eps=epsilons)
def test_sigmoid_is_monotone_and_bounded(level, width, a, b, upper, eps):
    eps = min(eps, upper / 4)
    lo, hi = min(a, b), max(a, b)
    out = sigmoid_window(np.array([lo, hi], dtype=np.float32), level, width, upper, eps)
    assert out.dtype == np.float32
    assert out[0] <= out[1]
    assert 0.0 <= out[0] and out[1] <= upper


@given(level=levels, width=widths, upper=uppers, eps=epsilons)
def test_sigmoid_equals_the_formula_at_the_window_edges(level, width, upper, eps):
    eps = min(eps, upper / 4)
    edges = np.array([level - width / 2, level, level + width / 2], dtype=np.float64)
    out = sigmoid_window(edges, level, width, upper, eps)
    np.testing.assert_allclose(out, [eps, upper / 2, upper - eps], rtol=2e-4, atol=2e-5 * upper)


@given(hu=hu_arrays, level=levels, width=widths)
def test_sigmoid_matches_the_literal_formula(hu, level, width):
    # float32 arithmetic: the error grows with the slope k (per HU) times the magnitudes involved
    k = math.log(254.0) / width
    atol = 2e-6 + k * 1e-7 * (abs(level) + float(np.max(np.abs(hu - level))))
    np.testing.assert_allclose(sigmoid_window(hu, level, width), sigmoid_reference(hu, level, width), atol=atol)


@given(level=levels, width=widths, a=hus, b=hus)
def test_linear_is_monotone_and_clipped_at_the_edges(level, width, a, b):
    lo, hi = min(a, b), max(a, b)
    x = np.array([lo, hi, level - width / 2 - 1, level + width / 2 + 1], dtype=np.float32)
    out = linear_window(x, level, width)
    assert out.dtype == np.float32
    assert 0.0 <= out[0] <= out[1] <= 1.0
    assert out[2] == 0.0 and out[3] == 1.0


@given(level=levels, width=widths)
def test_linear_is_exact_inside_the_window(level, width):
    x = np.array([level - width / 4, level, level + width / 4], dtype=np.float64)
    np.testing.assert_allclose(linear_window(x, level, width), [0.25, 0.5, 0.75], atol=1e-4)


@settings(max_examples=50)
@given(hu=arrays(np.float32, st.tuples(st.integers(1, 8).map(lambda n: 2 * n), st.integers(1, 8).map(lambda n: 2 * n)),
                 elements=hus),
       mode=st.sampled_from(["sigmoid", "linear"]))
def test_windowing_commutes_with_max_pooling(hu, mode):
    """The 224 path windows after pooling; monotone windows make that exactly equal."""
    np.testing.assert_array_equal(max_pool2(window_stack(hu, mode)), window_stack(max_pool2(hu), mode))


def test_window_stack_has_the_three_paper_windows_in_order():
    hu = np.array([[-1000.0, 0.0, 40.0, 50.0, 600.0, 2000.0]], dtype=np.float32)
    stack = window_stack(hu)
    assert stack.shape == (3, 1, 6) and stack.dtype == np.float32
    assert list(WINDOWS) == ["brain", "subdural", "bone"]
    assert WINDOWS == {"brain": (40.0, 80.0), "subdural": (50.0, 130.0), "bone": (600.0, 2800.0)}
    assert stack[0, 0, 2] == pytest.approx(0.5, abs=1e-6)  # brain window centre 40
    assert stack[1, 0, 3] == pytest.approx(0.5, abs=1e-6)  # subdural centre 50
    assert stack[2, 0, 4] == pytest.approx(0.5, abs=1e-6)  # bone centre 600
    linear = window_stack(hu, "linear")
    assert linear[0, 0, 0] == 0.0 and linear[0, 0, 5] == 1.0


def test_window_fill_is_the_window_of_air():
    assert window_fill("linear") == [0.0, 0.0, 0.0]
    fill = window_fill("sigmoid")
    assert fill[0] < 1e-6 and 0 < fill[2] < 0.01


@pytest.mark.parametrize(("level", "width"), [(40, 0), (40, -5), (math.nan, 80), (40, math.inf)])
def test_invalid_windows_are_refused_with_the_values(level, width):
    with pytest.raises(ImagingError, match="width"):
        sigmoid_window(np.zeros(2), level, width)
    with pytest.raises(ImagingError, match="width"):
        linear_window(np.zeros(2), level, width)


def test_invalid_sigmoid_parameters_and_mode_are_refused():
    with pytest.raises(ImagingError, match="eps"):
        sigmoid_window(np.zeros(2), 40, 80, upper=1.0, eps=0.6)
    with pytest.raises(ImagingError, match="'tanh'"):
        window_stack(np.zeros((2, 2)), "tanh")
    with pytest.raises(ImagingError, match="2-D"):
        window_stack(np.zeros((2, 2, 2)))
