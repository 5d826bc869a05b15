"""The series gate: which complete series are analysed, as a table of rules built from ``[series]`` settings.

Like MONAI Deploy's series selector, the rules are data: each has a name, a test on the facts of a
series and a reason shown on the worklist when the test fails. A refused series is stored and listed
as ``not_analysed`` with that reason, never dropped. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from triage.config import SeriesSettings


@dataclass(frozen=True)
class SeriesFacts:
    """What the gate looks at, taken from the series' stored header fields.

    ``multiframe`` is set for Enhanced CT series, whose slices are frames: the instance count says
    nothing about them, so the slice-count rules do not apply.
    """

    modality: str = "CT"
    body_part: str = ""
    series_description: str = ""
    study_description: str = ""
    slice_thickness: float | None = None
    image_type: str = ""
    num_instances: int = 0
    multiframe: bool = False


@dataclass(frozen=True)
class Rule:
    """One gate rule: ``passes(facts)`` must hold, else the series is not analysed for ``reason(facts)``."""

    name: str
    passes: Callable[[SeriesFacts], bool]
    reason: Callable[[SeriesFacts], str]


def _matches(pattern: str, *values: str) -> bool:
    return any(re.search(pattern, value) for value in values)


def _image_type_values(facts: SeriesFacts) -> list[str]:
    return [v.strip().upper() for v in facts.image_type.split("\\")]


def _axial(facts: SeriesFacts) -> bool:
    values = _image_type_values(facts)
    if "LOCALIZER" in values:
        return False
    # ImageType value 3 is AXIAL for axial CT slices; a missing value 3 cannot tell, so it passes
    return len(values) < 3 or values[2] in ("AXIAL", "")


def rules(settings: SeriesSettings) -> tuple[Rule, ...]:
    """The gate rules for ``settings``, in the order they are checked."""
    s = settings
    return (
        Rule("modality", lambda f: f.modality == "CT", lambda f: f"modality {f.modality!r} is not CT"),
        Rule(
            "body part",
            lambda f: _matches(s.body_part_pattern, f.body_part),
            lambda f: f"body part {f.body_part!r} does not match {s.body_part_pattern!r}",
        ),
        Rule(
            "description",
            lambda f: _matches(s.description_pattern, f.series_description, f.study_description),
            lambda f: f"descriptions {f.series_description!r} / {f.study_description!r} "
            f"do not match {s.description_pattern!r}",
        ),
        Rule(
            "slice thickness",
            lambda f: f.slice_thickness is None
            or s.min_slice_thickness <= f.slice_thickness <= s.max_slice_thickness,
            lambda f: f"slice thickness {f.slice_thickness} mm is outside "
            f"{s.min_slice_thickness}..{s.max_slice_thickness} mm",
        ),
        Rule(
            "axial",
            lambda f: not s.require_axial or _axial(f),
            lambda f: f"image type {f.image_type!r} is not axial (value 3 must be AXIAL, no LOCALIZER)",
        ),
        Rule(
            "minimum slices",
            lambda f: f.multiframe or f.num_instances >= s.min_slices,
            lambda f: f"{f.num_instances} slices, fewer than the minimum of {s.min_slices}",
        ),
        Rule(
            "maximum slices",
            lambda f: f.multiframe or f.num_instances <= s.max_slices,
            lambda f: f"{f.num_instances} slices, more than the maximum of {s.max_slices}",
        ),
    )


def refusal(facts: SeriesFacts, settings: SeriesSettings) -> str | None:
    """Why the series is not analysed (the first failing rule's reason), or None when it is.

    Parameters
    ----------
    facts
        The series' header fields and instance count.
    settings
        The ``[series]`` settings that the rules are built from.
    """
    for rule in rules(settings):
        if not rule.passes(facts):
            return f"not analysed: {rule.reason(facts)}"
    return None
