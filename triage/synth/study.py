"""One phantom study in memory: random head + chosen hemorrhages -> DICOM datasets + slice labels."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydicom import Dataset

from triage.domain import CLASSES, SUBTYPES
from triage.errors import UsageError
from triage.synth.anatomy import FOV_MM, Anatomy, Grid
from triage.synth.bleeds import SAMPLERS, Bleed, BleedOptions, check_subtypes
from triage.synth.files import StudyHeader, build_dataset, derived_uid, make_header
from triage.synth.render import AIR, SliceRenderer

LOGGER = logging.getLogger(__name__)

MAX_SLICES = 400
ROWS_RANGE = (64, 1024)
PLACEMENT_ATTEMPTS = 8


@dataclass
class PhantomStudy:
    """A rendered study: datasets in InstanceNumber order and their labels.

    Attributes
    ----------
    datasets : list of pydicom.Dataset
        One CT slice each, with file meta, ready for ``save_as`` or C-STORE.
    labels : numpy.ndarray
        uint8 (slices, 6), columns in the order of :data:`triage.domain.CLASSES`.
    subtypes : tuple of str
        The hemorrhage subtypes placed in the study.
    pixels : numpy.ndarray
        int (slices, 5): pixels of each subtype drawn on each slice.
    z : numpy.ndarray
        Position of each slice along the slice normal (mm), as :func:`triage.imaging.z_position`.
    header : StudyHeader
        Study identifiers and fields.
    hu : numpy.ndarray or None
        float32 (slices, rows, rows) Hounsfield units when ``keep_hu`` was asked for.
    """

    datasets: list[Dataset]
    labels: np.ndarray
    subtypes: tuple[str, ...]
    pixels: np.ndarray
    z: np.ndarray
    header: StudyHeader
    subtle: bool
    hu: np.ndarray | None = None

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID (an ``ID_`` identifier in the Kaggle layout)."""
        return self.header.study_uid

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID."""
        return self.header.series_uid

    @property
    def study_labels(self) -> np.ndarray:
        """uint8 (6,): a class is present in the study when it is on any slice."""
        return self.labels.max(axis=0) if len(self.labels) else np.zeros(len(CLASSES), dtype=np.uint8)


def _check(slices: int, rows: int) -> None:
    if not 1 <= slices <= MAX_SLICES:
        raise UsageError(f"slices {slices!r} is invalid; expected 1..{MAX_SLICES}")
    if not ROWS_RANGE[0] <= rows <= ROWS_RANGE[1] or rows % 2:
        raise UsageError(f"rows {rows!r} is invalid; expected an even number in {ROWS_RANGE[0]}..{ROWS_RANGE[1]}")


@lru_cache(maxsize=4)
def _fov_mask(rows: int) -> np.ndarray:
    spacing = FOV_MM / rows
    axis = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2.0) * spacing
    mask = np.hypot(axis[None, :], axis[:, None]) > (rows / 2.0) * spacing
    mask.setflags(write=False)
    return mask


def _noise(rng: np.random.Generator, rows: int, sigma: float) -> np.ndarray:
    """Noise of standard deviation ``sigma``, correlated over about two pixels like CT noise.

    The 2x2 box sum of uniform noise: each value is a sum of four uniforms (Irwin-Hall, close to
    Gaussian), five times cheaper to draw than ``standard_normal``.
    """
    white = rng.random((rows + 1, rows + 1), dtype=np.float32)
    out = white[:-1, :-1] + white[1:, :-1]
    out += white[:-1, 1:]
    out += white[1:, 1:]
    out -= np.float32(2.0)
    out *= np.float32(sigma * math.sqrt(3.0))
    return out


def _render(
    grid: Grid, bleeds: list[Bleed], heights: np.ndarray, options: BleedOptions
) -> tuple[list[tuple[tuple[slice, slice], np.ndarray]], np.ndarray]:
    renderer = SliceRenderer(grid, bleeds, options)
    images: list[tuple[tuple[slice, slice], np.ndarray]] = []
    pixels = np.zeros((len(heights), len(SUBTYPES)), dtype=np.int64)
    for i, t in enumerate(heights):
        result = renderer.render(float(t))
        images.append((result.box, result.hu))
        for name, count in result.counts.items():
            pixels[i, SUBTYPES.index(name)] += count
    return images, pixels


def _place(
    seed: int, anatomy: Anatomy, grid: Grid, heights: np.ndarray, subtypes: tuple[str, ...], options: BleedOptions
) -> tuple[list[tuple[tuple[slice, slice], np.ndarray]], np.ndarray, list[Bleed]]:
    """Sample the bleeds until every requested subtype shows on at least one slice."""
    for attempt in range(PLACEMENT_ATTEMPTS):
        bleeds = [
            SAMPLERS[name](np.random.default_rng([seed, 1, SUBTYPES.index(name), attempt]), anatomy, heights, options)
            for name in subtypes
        ]
        images, pixels = _render(grid, bleeds, heights, options)
        shown = pixels.max(axis=0) > 0
        if all(shown[SUBTYPES.index(name)] for name in subtypes):
            return images, pixels, bleeds
        LOGGER.debug("seed %d attempt %d: not every subtype showed; placing again", seed, attempt)
    raise UsageError(
        f"could not place {', '.join(subtypes)} in {len(heights)} slice(s) of seed {seed}; use more slices"
    )


def make_study(
    seed: int,
    *,
    slices: int = 32,
    subtypes: Sequence[str] = (),
    rows: int = 512,
    kaggle: bool = False,
    options: BleedOptions | None = None,
    noise: bool = True,
    keep_hu: bool = False,
    number: int = 1,
) -> PhantomStudy:
    """Render one synthetic head-CT study with the given hemorrhage subtypes (none: a normal head).

    Parameters
    ----------
    seed : int
        Everything random comes from it: the same arguments give the same bytes. The head depends on
        ``seed`` only, so ``subtypes=()`` and ``subtypes=("subdural",)`` share their anatomy.
    slices : int
        Number of axial slices, 5 mm apart (32 cover the head from the skull base to the vertex;
        fewer are centred on the ventricles).
    subtypes : sequence of str
        Names from :data:`triage.domain.SUBTYPES`; each shows on at least one slice.
    rows : int
        Matrix size (rows = columns); the field of view stays 230 mm, so 512 gives 0.45 mm pixels.
    kaggle : bool
        RSNA-like headers and identifiers instead of a fully valid CT object.
    options : BleedOptions, optional
        Densities and sizes of the bleeds.
    noise : bool
        Add CT noise (switch off to compare pixels exactly).
    keep_hu : bool
        Keep the rendered HU volume on the result.
    number : int
        Study number used in the synthetic patient name.

    Returns
    -------
    PhantomStudy
        Datasets in InstanceNumber order and their (slices, 6) labels.
    """
    _check(slices, rows)
    chosen = check_subtypes(subtypes)
    options = options or BleedOptions()
    anatomy = Anatomy.sample(np.random.default_rng([seed, 0]), slices)
    grid = Grid.build(anatomy, rows)
    heights = anatomy.slice_heights(slices)
    images, pixels, bleeds = _place(seed, anatomy, grid, heights, chosen, options)
    entropy = f"triage-synth:{seed}:{slices}:{','.join(chosen)}:{rows}:{kaggle}:{options}:{noise}"
    header_rng = np.random.default_rng([seed, 3])
    header = make_header(header_rng, entropy, number, kaggle, anatomy.tilt)
    descending = bool(header_rng.random() < 0.5)
    order = list(range(slices))[::-1] if descending else list(range(slices))
    noise_rng = np.random.default_rng([seed, 2])
    fov = _fov_mask(rows)
    datasets, volume, z = [], [], []
    for instance, index in enumerate(order, start=1):
        hu = np.full((rows, rows), AIR, dtype=np.float32)
        box, image = images[index]
        hu[box] = image
        if noise:
            hu += _noise(noise_rng, rows, anatomy.noise_sigma)
        hu[fov] = header.encoding.outside
        sop = _sop_uid(header_rng, entropy, instance, kaggle)
        ds = build_dataset(header, sop, instance, hu, grid.spacing, float(heights[index]))
        datasets.append(ds)
        z.append(float(ds.get("SliceLocation", 0.0)) if not kaggle else _z(ds))
        if keep_hu:
            volume.append(hu)
    pixels = pixels[order]
    labels = np.zeros((slices, len(CLASSES)), dtype=np.uint8)
    labels[:, 1:] = pixels > 0
    labels[:, 0] = labels[:, 1:].max(axis=1)
    return PhantomStudy(
        datasets=datasets,
        labels=labels,
        subtypes=chosen,
        pixels=pixels,
        z=np.asarray(z),
        header=header,
        subtle=any(b.subtle for b in bleeds),
        hu=np.stack(volume) if keep_hu else None,
    )


def _sop_uid(rng: np.random.Generator, entropy: str, instance: int, kaggle: bool) -> str:
    if kaggle:
        return f"ID_{rng.bytes(5).hex()[:9]}"
    return derived_uid(entropy, "sop", str(instance))


def _z(ds: Dataset) -> float:
    from triage.imaging import z_position

    value = z_position(ds)
    return float("nan") if value is None else value
