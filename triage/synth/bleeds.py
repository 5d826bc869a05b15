"""The five hemorrhage subtypes as 3-D shapes in the head frame, and how they are drawn on a slice.

Each bleed is a solid that spans a height range, so adjacent slices agree. A slice is labelled
with a subtype exactly when the bleed covers at least ``min_area_mm2`` of it; below that it is
not drawn at all, so the labels always agree with the pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triage.domain import SUBTYPES
from triage.errors import UsageError
from triage.synth.anatomy import SUTURES, THETA, Anatomy, Ellipsoid, wrap_angle

LOGGER = logging.getLogger(__name__)

EPIDURAL, INTRAPARENCHYMAL, INTRAVENTRICULAR, SUBARACHNOID, SUBDURAL = SUBTYPES


@dataclass(frozen=True)
class BleedOptions:
    """Sizes and densities of the generated hemorrhages (HU, mm)."""

    contrast: tuple[float, float] = (58.0, 88.0)
    subtle_contrast: tuple[float, float] = (45.0, 55.0)
    subtle_fraction: float = 0.2
    size: float = 1.0
    min_area_mm2: float = 10.0

    def __post_init__(self) -> None:
        for name in ("contrast", "subtle_contrast"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high < 200.0:
                raise UsageError(f"{name} {getattr(self, name)!r} is invalid; expected 0 < low <= high < 200 HU")
        if not 0.0 <= self.subtle_fraction <= 1.0:
            raise UsageError(f"subtle_fraction {self.subtle_fraction!r} is invalid; expected 0..1")
        if not 0.3 <= self.size <= 3.0:
            raise UsageError(f"size {self.size!r} is invalid; expected 0.3..3")
        if self.min_area_mm2 <= 0:
            raise UsageError(f"min_area_mm2 {self.min_area_mm2!r} is invalid; expected > 0")


@dataclass(frozen=True)
class Bleed:
    """Common part: subtype, density (HU), height range, whether it is a subtle one."""

    subtype: str
    hu: float
    low: float
    high: float
    subtle: bool

    def touches(self, t: float, half_thickness: float = 2.5) -> bool:
        """Whether the slab of a slice at height ``t`` can meet this bleed."""
        return self.low - half_thickness < t < self.high + half_thickness


@dataclass(frozen=True)
class ExtraAxial(Bleed):
    """Epidural (lens, within one skull plate) or subdural (crescent) collection at the inner table."""

    angle: float
    half_angle: float
    centre: float
    half_height: float
    thickness: float
    power: float

    def thickness_table(self, t: float) -> np.ndarray:
        """Thickness (mm) per angle bin at height ``t``."""
        delta = wrap_angle(THETA - self.angle) / np.float32(self.half_angle)
        q = 1.0 - delta**2 - ((t - self.centre) / self.half_height) ** 2
        return (self.thickness * np.clip(q, 0.0, None) ** self.power).astype(np.float32)


@dataclass(frozen=True)
class Parenchymal(Bleed):
    """Round or lobulated haematoma inside the brain, optionally with a hypodense oedema rim."""

    shape: Ellipsoid
    lobes: tuple[tuple[float, float, float], ...]
    oedema_width: float
    oedema_hu: float


@dataclass(frozen=True)
class Ventricular(Bleed):
    """Blood in the ventricles layering dependently (posterior, supine): fluid level at ``level``."""

    level: float


@dataclass(frozen=True)
class Subarachnoid(Bleed):
    """Blood replacing CSF in convexity sulci (a sector), a sylvian fissure or the basal cisterns."""

    kind: str
    angle: float
    half_angle: float
    side: float
    fill: float


def _density(rng: np.random.Generator, options: BleedOptions) -> tuple[float, bool]:
    subtle = bool(rng.random() < options.subtle_fraction)
    low, high = options.subtle_contrast if subtle else options.contrast
    return float(rng.uniform(low, high)), subtle


def _centre(rng: np.random.Generator, heights: np.ndarray, low: float, high: float) -> float:
    """A height near a slice centre inside [low, high] (the nearest slice when none is inside)."""
    inside = np.flatnonzero((heights >= low) & (heights <= high))
    if inside.size:
        index = int(rng.choice(inside))
    else:
        index = int(np.argmin(np.abs(heights - (low + high) / 2.0)))
    return float(heights[index] + rng.uniform(-1.5, 1.5))


def _plate(angle: float) -> tuple[float, float]:
    """The skull plate (between two sutures) that contains ``angle``: (start, width) in radians."""
    edges = sorted(SUTURES)
    for start, end in zip(edges, [*edges[1:], edges[0] + 2 * math.pi], strict=True):
        offset = (angle - start) % (2 * math.pi)
        if offset < (end - start):
            return start, end - start
    return edges[0], 2 * math.pi  # pragma: no cover - the sutures cover the circle


def sample_epidural(rng: np.random.Generator, anatomy: Anatomy, heights: np.ndarray, options: BleedOptions) -> Bleed:
    """A biconvex lens against the inner table, confined to one skull plate (does not cross a suture)."""
    hu, subtle = _density(rng, options)
    centre = _centre(rng, heights, 24.0, anatomy.top - 40.0)
    start, width = _plate(float(rng.uniform(-math.pi, math.pi)))
    radius = 0.85 * min(anatomy.semi_x, anatomy.semi_y) * max(anatomy.section_scale(centre), 0.4)
    half_angle = min(float(rng.uniform(16.0, 34.0)) * options.size / radius, 0.45 * width - 0.04)
    angle = start + float(rng.uniform(half_angle + 0.03, width - half_angle - 0.03))
    thickness = float(rng.uniform(5.0, 9.0) if subtle else rng.uniform(9.0, 22.0)) * options.size
    half_height = float(rng.uniform(11.0, 24.0)) * options.size
    return ExtraAxial(
        EPIDURAL, hu, centre - half_height, centre + half_height, subtle,
        angle, half_angle, centre, half_height, thickness, 1.0,
    )


def sample_subdural(rng: np.random.Generator, anatomy: Anatomy, heights: np.ndarray, options: BleedOptions) -> Bleed:
    """A thin crescent over a convexity (may cross sutures)."""
    hu, subtle = _density(rng, options)
    centre = _centre(rng, heights, 30.0, anatomy.top - 28.0)
    side = 0.0 if rng.random() < 0.5 else math.pi
    angle = side + float(rng.uniform(-0.9, 0.9))
    thickness = float(rng.uniform(2.5, 4.0) if subtle else rng.uniform(4.0, 12.0)) * options.size
    half_height = float(rng.uniform(22.0, 42.0)) * options.size
    half_angle = math.radians(float(rng.uniform(35.0, 70.0)))
    return ExtraAxial(
        SUBDURAL, hu, centre - half_height, centre + half_height, subtle,
        angle, half_angle, centre, half_height, thickness, 0.5,
    )


def sample_intraparenchymal(
    rng: np.random.Generator, anatomy: Anatomy, heights: np.ndarray, options: BleedOptions
) -> Bleed:
    """A round or lobulated haematoma (basal ganglia, thalamus or lobar), sometimes with oedema."""
    hu, subtle = _density(rng, options)
    radius = float(rng.uniform(4.0, 7.0) if subtle else rng.uniform(7.0, 19.0)) * options.size
    site = rng.choice(["basal ganglia", "thalamus", "lobar", "lobar"])
    s = anatomy.scale
    side = 1.0 if rng.random() < 0.5 else -1.0
    if site == "basal ganglia":
        centre = _centre(rng, heights, 44.0, 60.0)
        cx, cy = side * 23.0 * s, float(rng.uniform(-8.0, 6.0)) * s
    elif site == "thalamus":
        centre = _centre(rng, heights, 42.0, 56.0)
        cx, cy = side * 10.0 * s, 13.0 * s
        radius = min(radius, 11.0)
    else:
        centre = _centre(rng, heights, 45.0, min(105.0, anatomy.top - 45.0))
        angle = float(rng.uniform(-math.pi, math.pi))
        k = anatomy.section_scale(centre)
        reach = max(min(anatomy.semi_x, anatomy.semi_y) * k - 18.0 - radius, 5.0) * float(rng.uniform(0.55, 0.85))
        cx, cy = reach * math.cos(angle), reach * math.sin(angle)
    shape = Ellipsoid(
        cx, cy, centre,
        radius * float(rng.uniform(0.8, 1.2)), radius * float(rng.uniform(0.8, 1.2)),
        max(radius * float(rng.uniform(0.8, 1.3)), 6.0), float(rng.uniform(0, math.pi)),
    )
    lobes = tuple(
        (float(k), float(rng.uniform(0.0, 0.18)), float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 5)
    )
    oedema = float(rng.uniform(2.0, 5.0)) if rng.random() < 0.6 else 0.0
    return Parenchymal(
        INTRAPARENCHYMAL, hu, centre - shape.hz, centre + shape.hz, subtle,
        shape, lobes, oedema, anatomy.white - float(rng.uniform(7.0, 13.0)),
    )


def sample_intraventricular(
    rng: np.random.Generator, anatomy: Anatomy, heights: np.ndarray, options: BleedOptions
) -> Bleed:
    """Blood in the lateral ventricles, layering in the occipital horns (or a cast)."""
    hu, subtle = _density(rng, options)
    hu = max(hu - float(rng.uniform(0.0, 8.0)), options.subtle_contrast[0])
    cast = rng.random() < 0.3
    level = -200.0 if cast else float(rng.uniform(6.0, 22.0)) * anatomy.scale
    return Ventricular(INTRAVENTRICULAR, hu, 42.0, 90.0, subtle, level)


def sample_subarachnoid(
    rng: np.random.Generator, anatomy: Anatomy, heights: np.ndarray, options: BleedOptions
) -> Bleed:
    """Hyperdense CSF spaces: convexity sulci in a sector, a sylvian fissure, or the basal cisterns."""
    hu, subtle = _density(rng, options)
    kind = str(rng.choice(["convexity", "convexity", "sylvian", "basal"]))
    covered = (float(heights[0]) - 2.5, float(heights[-1]) + 2.5)
    ranges = {"convexity": (48.0, anatomy.top - 30.0), "sylvian": (33.0, 54.0), "basal": (25.0, 37.0)}
    low, high = ranges[kind]
    if high < covered[0] or low > covered[1]:
        kind, (low, high) = "convexity", ranges["convexity"]
    if kind == "convexity":
        centre = _centre(rng, heights, low, high)
        reach = float(rng.uniform(10.0, 24.0)) * options.size
        low, high = centre - reach, centre + reach
    return Subarachnoid(
        SUBARACHNOID, hu, low, high, subtle, kind,
        float(rng.uniform(-math.pi, math.pi)), math.radians(float(rng.uniform(25.0, 60.0)) * options.size),
        float(rng.choice([-1.0, 1.0, 0.0])), float(rng.uniform(0.85, 1.0)),
    )


SAMPLERS = {
    EPIDURAL: sample_epidural,
    INTRAPARENCHYMAL: sample_intraparenchymal,
    INTRAVENTRICULAR: sample_intraventricular,
    SUBARACHNOID: sample_subarachnoid,
    SUBDURAL: sample_subdural,
}

#: How often each subtype is drawn first in a positive study, and which ones tend to come along.
FIRST_WEIGHTS = {EPIDURAL: 0.14, INTRAPARENCHYMAL: 0.24, INTRAVENTRICULAR: 0.14, SUBARACHNOID: 0.22, SUBDURAL: 0.26}
COMPANIONS = {
    EPIDURAL: (SUBDURAL, SUBARACHNOID),
    INTRAPARENCHYMAL: (INTRAVENTRICULAR, SUBARACHNOID),
    INTRAVENTRICULAR: (INTRAPARENCHYMAL, SUBARACHNOID),
    SUBARACHNOID: (SUBDURAL, INTRAVENTRICULAR),
    SUBDURAL: (SUBARACHNOID, EPIDURAL),
}


def choose_subtypes(rng: np.random.Generator) -> tuple[str, ...]:
    """Subtypes of one positive study: one (about 60 %), two (30 %) or three (10 %), co-occurring
    the way they do clinically (haematoma with ventricular extension, subdural with subarachnoid)."""
    first = str(rng.choice(list(FIRST_WEIGHTS), p=list(FIRST_WEIGHTS.values())))
    chosen = [first]
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    pool = list(COMPANIONS[first]) + [s for s in SUBTYPES if s not in COMPANIONS[first] and s != first]
    for candidate in pool:
        if len(chosen) >= count:
            break
        if candidate in COMPANIONS[first] or rng.random() < 0.3:
            chosen.append(candidate)
    return tuple(s for s in SUBTYPES if s in chosen)


def check_subtypes(subtypes: Sequence[str]) -> tuple[str, ...]:
    """Validate subtype names; return them in the order of :data:`triage.domain.SUBTYPES`."""
    unknown = [s for s in subtypes if s not in SUBTYPES]
    if unknown:
        raise UsageError(f"unknown hemorrhage subtype(s) {unknown!r}; expected any of {', '.join(SUBTYPES)}")
    return tuple(s for s in SUBTYPES if s in subtypes)
