"""In-memory phantoms: labels agree with pixels, every subtype shows, anatomy is plausible, seeds repeat."""

from __future__ import annotations

import io

import numpy as np
import pytest

from triage.domain import CLASSES, SUBTYPES
from triage.errors import UsageError
from triage.imaging import preprocess, slice_order, to_hu, z_position
from triage.synth import BleedOptions, make_study

ROWS = 256  # 0.9 mm pixels: same anatomy, four times faster


def dataset_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_each_subtype_shows_on_adjacent_slices_with_consistent_labels(subtype):
    study = make_study(21, slices=16, rows=ROWS, subtypes=(subtype,))
    k = CLASSES.index(subtype)
    positive = np.flatnonzero(study.labels[:, k])
    assert positive.size >= 2, f"{subtype} should span adjacent slices"
    assert np.all(np.diff(positive) == 1), f"{subtype} slices are not contiguous: {positive}"
    np.testing.assert_array_equal(study.labels[:, 0], study.labels[:, 1:].max(axis=1))
    others = [CLASSES.index(s) for s in SUBTYPES if s != subtype]
    assert study.labels[:, others].sum() == 0
    assert study.study_labels[0] == 1 and study.study_labels[k] == 1


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_labels_agree_with_the_pixels(subtype):
    """A positive slice has blood-density voxels inside the skull that the same head without the
    bleed lacks; a negative slice is identical to it."""
    seed = 5
    bleed = make_study(seed, slices=12, subtypes=(subtype,), noise=False, keep_hu=True)
    clean = make_study(seed, slices=12, noise=False, keep_hu=True)
    assert bleed.hu is not None and clean.hu is not None
    min_pixels = BleedOptions().min_area_mm2 / 0.45**2
    for i, label in enumerate(bleed.labels[:, 0]):
        changed = np.abs(bleed.hu[i] - clean.hu[i]) > 1.0
        if label:
            blood = changed & (bleed.hu[i] >= 44) & (bleed.hu[i] <= 110)
            assert np.count_nonzero(blood) >= 0.5 * min_pixels, f"slice {i} labelled {subtype} shows no blood"
            inside = clean.hu[i][changed]
            assert np.mean(bleed.hu[i][changed] - inside) > 3.0
        else:
            assert not changed.any(), f"slice {i} is negative but differs from the bleed-free head"
    assert clean.labels.sum() == 0


def test_bleeds_are_denser_than_brain_with_noise():
    noisy = make_study(8, slices=16, rows=ROWS, subtypes=("intraparenchymal",), keep_hu=True)
    drawn = make_study(8, slices=16, rows=ROWS, subtypes=("intraparenchymal",), keep_hu=True, noise=False)
    clean = make_study(8, slices=16, rows=ROWS, keep_hu=True, noise=False)
    assert noisy.hu is not None and drawn.hu is not None and clean.hu is not None
    i = int(np.argmax(noisy.pixels[:, SUBTYPES.index("intraparenchymal")]))
    bleed = (drawn.hu[i] - clean.hu[i]) > 10
    brain = (clean.hu[i] > 20) & (clean.hu[i] < 50) & (np.abs(drawn.hu[i] - clean.hu[i]) < 1)
    assert noisy.hu[i][bleed].mean() > noisy.hu[i][brain].mean() + 8


def test_co_occurring_subtypes_all_show():
    study = make_study(2, slices=20, rows=ROWS, subtypes=("subarachnoid", "subdural", "intraventricular"))
    for name in ("subarachnoid", "subdural", "intraventricular"):
        assert study.labels[:, CLASSES.index(name)].any(), name
    assert study.subtypes == ("intraventricular", "subarachnoid", "subdural")


def test_negative_study_has_no_labels_and_plausible_anatomy():
    study = make_study(3, slices=32, keep_hu=True)
    assert study.labels.shape == (32, 6) and study.labels.sum() == 0
    assert study.hu is not None
    hu = study.hu[14]
    assert np.mean(hu <= -900) > 0.3  # air around the head
    assert np.count_nonzero(hu > 700) > 2000  # skull
    brain = hu[(hu > 15) & (hu < 60)]
    assert brain.size > 30000 and 25 < np.median(brain) < 45
    assert np.count_nonzero((hu > -20) & (hu < 15)) > 500  # CSF
    # the section shrinks towards the vertex and the last slices are small
    head = [np.count_nonzero(to_hu(ds) > -500) for ds in study.datasets]
    order = slice_order(study.datasets)
    sizes = [head[i] for i in order]
    assert sizes[-1] < 0.5 * max(sizes)


def test_same_seed_gives_the_same_bytes_and_different_seeds_differ():
    a = make_study(9, slices=3, rows=128, subtypes=("epidural",))
    b = make_study(9, slices=3, rows=128, subtypes=("epidural",))
    c = make_study(10, slices=3, rows=128, subtypes=("epidural",))
    assert [dataset_bytes(d) for d in a.datasets] == [dataset_bytes(d) for d in b.datasets]
    assert dataset_bytes(a.datasets[1]) != dataset_bytes(c.datasets[1])


def test_the_same_head_with_and_without_a_bleed_has_different_uids():
    with_bleed = make_study(4, slices=4, rows=128, subtypes=("subdural",))
    without = make_study(4, slices=4, rows=128)
    assert with_bleed.study_uid != without.study_uid
    assert {d.SOPInstanceUID for d in with_bleed.datasets}.isdisjoint({d.SOPInstanceUID for d in without.datasets})


def test_datasets_are_in_instance_order_with_positions():
    study = make_study(12, slices=8, rows=128)
    assert [int(ds.InstanceNumber) for ds in study.datasets] == list(range(1, 9))
    z = [z_position(ds) for ds in study.datasets]
    np.testing.assert_allclose(z, study.z, atol=1e-3)
    assert np.allclose(np.abs(np.diff(study.z)), 5.0, atol=0.01)


def test_phantom_slices_become_model_input():
    study = make_study(13, slices=2, subtypes=("subdural",))
    for ds in study.datasets:
        assert preprocess(ds, 448).shape == (3, 448, 448)
        assert preprocess(ds, 224, "linear").shape == (3, 224, 224)


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(UsageError, match="'bleed'"):
        make_study(1, subtypes=("bleed",))
    with pytest.raises(UsageError, match="slices 0"):
        make_study(1, slices=0)
    with pytest.raises(UsageError, match="rows 1001"):
        make_study(1, rows=1001)
    with pytest.raises(UsageError, match="subtle_fraction"):
        BleedOptions(subtle_fraction=2.0)
