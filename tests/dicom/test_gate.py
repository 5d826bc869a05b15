"""The series gate (rules as data) and the proof of completeness."""

from __future__ import annotations

import pytest

from triage.config import SeriesSettings
from triage.dicom.completion import evenly_spaced, is_complete
from triage.dicom.gate import SeriesFacts, refusal, rules

HEAD = SeriesFacts(body_part="HEAD", series_description="AXIAL 5MM", study_description="CT HEAD WO",
                   slice_thickness=5.0, image_type="ORIGINAL\\PRIMARY\\AXIAL", num_instances=32)


def test_a_head_ct_passes() -> None:
    assert refusal(HEAD, SeriesSettings()) is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"modality": "MR"}, "modality 'MR'"),
    ({"body_part": "CHEST"}, "body part 'CHEST'"),
    ({"series_description": "LUNG", "study_description": "THORAX"}, "descriptions 'LUNG' / 'THORAX'"),
    ({"slice_thickness": 0.1}, "slice thickness 0.1 mm"),
    ({"slice_thickness": 12.0}, "slice thickness 12.0 mm"),
    ({"image_type": "ORIGINAL\\PRIMARY\\LOCALIZER"}, "is not axial"),
    ({"image_type": "DERIVED\\SECONDARY\\CORONAL"}, "is not axial"),
    ({"num_instances": 3}, "3 slices, fewer than the minimum of 8"),
    ({"num_instances": 5000}, "5000 slices, more than the maximum of 2000"),
])
def test_each_rule_refuses_with_its_reason(change: dict, reason: str) -> None:
    facts = SeriesFacts(**{**HEAD.__dict__, **change})
    text = refusal(facts, SeriesSettings())
    assert text is not None and text.startswith("not analysed: ") and reason in text


def test_the_rules_follow_the_settings() -> None:
    lenient = SeriesSettings(body_part_pattern=".*", require_axial=False, min_slices=1, max_slice_thickness=20)
    facts = SeriesFacts(**{**HEAD.__dict__, "body_part": "CHEST", "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER",
                           "num_instances": 2, "slice_thickness": 15.0})
    assert refusal(facts, lenient) is None
    assert [rule.name for rule in rules(lenient)][:2] == ["modality", "body part"]


def test_unknown_values_do_not_refuse() -> None:
    assert refusal(SeriesFacts(num_instances=10), SeriesSettings()) is None


def test_completeness_needs_the_announced_count() -> None:
    z = [float(k) * 5 for k in range(10)]
    assert is_complete(10, z)
    assert not is_complete(None, z)
    assert not is_complete(11, z)
    assert not is_complete(9, z)


def test_completeness_needs_an_evenly_spaced_run() -> None:
    assert not is_complete(4, [0.0, 5.0, 10.0, 20.0])  # a gap: a slice is missing, one is extra
    assert not is_complete(4, [0.0, 5.0, 5.0, 10.0])  # a repeated position
    assert is_complete(4, [10.0, 0.0, 5.0, 15.0])  # the order of arrival does not matter
    assert is_complete(3, [0.0, None, 10.0])  # without full geometry the count decides
    assert evenly_spaced([0.0, 2.5, 5.01, 7.5])
    assert not evenly_spaced([1.0, 1.0, 1.0])


def test_enhanced_ct_frames_are_not_counted_as_instances() -> None:
    one_instance = SeriesFacts(**{**HEAD.__dict__, "num_instances": 1})
    assert "fewer than the minimum" in refusal(one_instance, SeriesSettings())
    assert refusal(SeriesFacts(**{**one_instance.__dict__, "multiframe": True}), SeriesSettings()) is None
