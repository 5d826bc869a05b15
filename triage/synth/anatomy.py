"""Random head anatomy of one phantom study and the in-plane grid it is drawn on.

Coordinates: the *head frame* is in mm, X towards the patient's left, Y posterior, origin at the
head centre; ``t`` is the height in mm above the skull base along the slice normal. Angles are
``atan2(Y, X)``: 0 left, -pi/2 anterior, +pi/2 posterior. docs/phantoms.md draws the layout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

LOGGER = logging.getLogger(__name__)

#: Bins of the angle tables (about 0.3 mm at the brain surface).
THETA_BINS = 2048
THETA = (-math.pi + (np.arange(THETA_BINS) + 0.5) * (2 * math.pi / THETA_BINS)).astype(np.float32)

#: Field of view of a 512 x 512 slice with 0.45 mm pixels.
FOV_MM = 512 * 0.45
SLICE_SPACING = 5.0
#: Room around the skin for the head rest (mm).
HEADREST_MARGIN = 12.0

#: Angles of the sutures in the head frame (coronal left/right, lambdoid left/right), radians.
SUTURES = tuple(math.radians(a) for a in (-35.0, -145.0, 40.0, 140.0))


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in the head frame: centre (cx, cy, tz), semi-axes (rx, ry, hz), in-plane angle."""

    cx: float
    cy: float
    tz: float
    rx: float
    ry: float
    hz: float
    angle: float = 0.0

    def section(self, t: float) -> tuple[float, float, float, float, float] | None:
        """(cx, cy, rx, ry, angle) of the cut at height ``t``, or None when it misses."""
        q = 1.0 - ((t - self.tz) / self.hz) ** 2
        if q <= 0.01:
            return None
        k = math.sqrt(q)
        return self.cx, self.cy, self.rx * k, self.ry * k, self.angle


@dataclass(frozen=True)
class Sulci:
    """Cortical sulci: angle at t=60, drift per mm, width (mm), depth (mm), height range."""

    angle: np.ndarray
    drift: np.ndarray
    width: np.ndarray
    depth: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class Anatomy:
    """Every random number that shapes one head (the same seed gives the same head)."""

    scale: float
    semi_x: float
    semi_y: float
    shift: tuple[float, float]
    yaw: float
    top: float
    harmonics: np.ndarray  # (k, amplitude, phase) rows
    grey: float
    white: float
    csf: float
    deep_grey: float
    scalp: float
    bone: float
    diploe: float
    skull: float
    gap: float
    cortex: float
    ventricle_scale: float
    falx: float
    sulci: Sulci
    noise_sigma: float
    cupping: float
    rim: float
    streak: float
    tilt: float
    t_start: float
    structures: dict[str, list[Ellipsoid]] = field(default_factory=dict)

    @classmethod
    def sample(cls, rng: np.random.Generator, slices: int) -> Anatomy:
        """Draw a random head for a study of ``slices`` slices 5 mm apart."""
        scale = float(rng.uniform(0.9, 1.04))
        atrophy = float(rng.beta(2.0, 4.0))
        n_sulci = int(rng.integers(48, 64))
        low = rng.uniform(-10.0, 90.0, n_sulci)
        sulci = Sulci(
            angle=rng.uniform(-math.pi, math.pi, n_sulci).astype(np.float32),
            drift=rng.normal(0.0, 0.004, n_sulci).astype(np.float32),
            width=(rng.uniform(1.1, 2.0, n_sulci) * (1.0 + 0.8 * atrophy)).astype(np.float32),
            depth=rng.uniform(7.0, 17.0, n_sulci).astype(np.float32),
            low=low.astype(np.float32),
            high=(low + rng.uniform(40.0, 120.0, n_sulci)).astype(np.float32),
        )
        ks = np.arange(2, 6)
        harmonics = np.stack([ks, rng.uniform(0.004, 0.018, ks.size), rng.uniform(0, 2 * math.pi, ks.size)], axis=1)
        top = float(rng.uniform(140.0, 156.0))
        start = max(60.0 - 2.5 * (slices - 1), -6.0) + float(rng.uniform(-3.0, 3.0))
        ventricle_scale = float(0.85 + 0.7 * atrophy + rng.uniform(-0.05, 0.1))
        anatomy = cls(
            scale=scale,
            semi_x=float(rng.uniform(70.0, 76.0)) * scale,
            semi_y=float(rng.uniform(88.0, 96.0)) * scale,
            shift=(float(rng.uniform(-9.0, 9.0)), float(rng.uniform(-8.0, 8.0))),
            yaw=math.radians(float(rng.uniform(-12.0, 12.0))),
            top=top,
            harmonics=harmonics.astype(np.float32),
            grey=float(rng.uniform(37.0, 44.0)),
            white=float(rng.uniform(25.0, 31.0)),
            csf=float(rng.uniform(2.0, 12.0)),
            deep_grey=float(rng.uniform(34.0, 40.0)),
            scalp=float(rng.uniform(25.0, 45.0)),
            bone=float(rng.uniform(1100.0, 1450.0)),
            diploe=float(rng.uniform(450.0, 750.0)),
            skull=float(rng.uniform(4.5, 6.5)),
            gap=float(0.4 + 2.2 * atrophy),
            cortex=float(rng.uniform(2.4, 3.4)),
            ventricle_scale=ventricle_scale,
            falx=float(rng.uniform(48.0, 62.0)),
            sulci=sulci,
            noise_sigma=float(rng.uniform(4.0, 12.0)),
            cupping=float(rng.uniform(2.0, 6.0)),
            rim=float(rng.uniform(2.0, 7.0)),
            streak=float(rng.uniform(8.0, 25.0)),
            tilt=float(rng.uniform(5.0, 20.0)) if rng.random() < 0.35 else 0.0,
            t_start=start,
        )
        return anatomy._with_structures(rng)

    def _with_structures(self, rng: np.random.Generator) -> Anatomy:
        s, v = self.scale, self.ventricle_scale
        sv = math.sqrt(v)
        jitter = float(rng.uniform(-3.0, 3.0))
        structures: dict[str, list[Ellipsoid]] = {"ventricles": [], "deep_grey": [], "base": [], "air": []}
        for side in (1.0, -1.0):
            a = side  # mirror in X
            structures["ventricles"] += [
                Ellipsoid(a * (8.5 * sv) * s, -21.0 * s, 70 + jitter, 4.5 * v * s, 12.0 * sv * s, 13.0, a * 0.35),
                Ellipsoid(a * (10.0 * sv) * s, -2.0 * s, 73 + jitter, 4.2 * v * s, 17.0 * sv * s, 11.0, a * 0.08),
                Ellipsoid(a * (15.0 * sv) * s, 22.0 * s, 64 + jitter, 6.5 * v * s, 13.0 * sv * s, 13.0, -a * 0.45),
                Ellipsoid(a * 29.0 * s, 4.0 * s, 40 + jitter, 2.4 * v * s, 8.0 * s, 6.0, a * 0.3),
            ]
            structures["deep_grey"] += [
                Ellipsoid(a * (8.5 * sv + 7.5) * s, -16.0 * s, 64 + jitter, 4.5 * s, 8.0 * s, 12.0, a * 0.3),
                Ellipsoid(a * 23.0 * s, -2.0 * s, 52 + jitter, 6.5 * s, 15.0 * s, 12.0, a * 0.25),
                Ellipsoid(a * 9.5 * s, 12.0 * s, 50 + jitter, 8.0 * s, 10.0 * s, 10.0, 0.0),
            ]
            structures["base"] += [Ellipsoid(a * 41.0 * s, -8.0 * s, 24.0, 19.0 * s, 30.0 * s, 30.0, -a * 0.2)]
            structures["air"] += [Ellipsoid(a * 52.0 * s, 22.0 * s, 6.0, 8.0 * s, 10.0 * s, 12.0)]
        structures["ventricles"] += [
            Ellipsoid(0.0, 3.0 * s, 47 + jitter, 2.2 * v * s, 11.0 * s, 9.0),
            Ellipsoid(0.0, 27.0 * s, 20.0, 6.0 * s, 4.5 * s, 8.0),
        ]
        structures["base"] += [
            Ellipsoid(0.0, 38.0 * s, 22.0, 48.0 * s, 32.0 * s, 34.0),
            Ellipsoid(0.0, -44.0 * s, 26.0, 24.0 * s, 18.0 * s, 16.0),
        ]
        structures["air"] += [Ellipsoid(0.0, -24.0 * s, 10.0, 12.0 * s, 9.0 * s, 12.0)]
        structures["brainstem"] = [Ellipsoid(0.0, 12.0 * s, 18.0, 13.0 * s, 13.0 * s, 24.0)]
        structures["midbrain"] = [Ellipsoid(0.0, 8.0 * s, 32.0, 12.0 * s, 12.0 * s, 9.0)]
        structures["suprasellar"] = [Ellipsoid(0.0, -12.0 * s, 31.0, 9.0 * s, 7.0 * s, 8.0)]
        object.__setattr__(self, "structures", structures)
        return self

    # -- profiles along the height --------------------------------------------------------------

    def section_scale(self, t: float) -> float:
        """Head cross-section relative to the widest one (0 above the vertex)."""
        widest = 62.0
        if t >= widest:
            q = 1.0 - ((t - widest) / (self.top - widest)) ** 2
            return math.sqrt(q) if q > 0 else 0.0
        return max(0.55, 1.0 - 0.3 * ((widest - t) / widest) ** 2)

    def base_weight(self, t: float) -> float:
        """1 in skull-base slices (bone and posterior fossa), 0 above them."""
        return float(np.clip((28.0 - t) / 14.0, 0.0, 1.0))

    def slice_heights(self, slices: int) -> np.ndarray:
        """Heights ``t`` of the slices, bottom to top."""
        return (self.t_start + SLICE_SPACING * np.arange(slices)).astype(np.float64)

    # -- angle tables ---------------------------------------------------------------------------

    def skin_table(self, t: float) -> np.ndarray:
        """Outer skin radius per angle bin (mm)."""
        k = self.section_scale(t)
        cos, sin = np.cos(THETA), np.sin(THETA)
        radius = self.semi_x * self.semi_y / np.sqrt((self.semi_y * cos) ** 2 + (self.semi_x * sin) ** 2)
        shape = 1.0 + 0.035 * sin  # occiput a little wider than the forehead
        for harmonic, amplitude, phase in self.harmonics:
            shape = shape + amplitude * np.cos(harmonic * THETA + phase)
        return (radius * shape * k).astype(np.float32)

    def scalp_table(self, t: float) -> np.ndarray:
        """Scalp thickness per angle (temporalis muscle makes it thicker at the sides)."""
        muscle = 5.0 * np.exp(-(((np.abs(np.cos(THETA)) - 1.0) / 0.12) ** 2)) * float(30.0 < t < 85.0)
        return (4.0 + muscle).astype(np.float32)

    def skull_table(self, t: float) -> np.ndarray:
        """Skull thickness per angle: thicker at the occiput and towards the vertex (oblique cut)."""
        thick = self.skull + 1.2 * np.sin(THETA) ** 2 + 0.8 * np.maximum(np.sin(THETA), 0.0)
        k = self.section_scale(t)
        oblique = 1.0 / math.sqrt(max(k, 0.3)) if t > 62.0 else 1.0
        return np.clip(thick * oblique, 4.0, 12.0).astype(np.float32)

    def suture_table(self, t: float, spacing: float) -> np.ndarray:
        """0..1 per angle: how much a suture line crosses the bone there."""
        out = np.zeros(THETA_BINS, dtype=np.float32)
        if t < 35.0:
            return out
        half = (0.6 * spacing + 0.3) / max(self.semi_x * self.section_scale(t), 1.0)
        for angle in SUTURES:
            delta = np.abs(wrap_angle(THETA - angle))
            np.maximum(out, np.clip(1.0 - delta / half, 0.0, 1.0), out=out)
        return out

    def sulcus_tables(self, t: float, brain_radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(opening 0..1, depth mm, white-matter dip mm) per angle from the sulci active at ``t``."""
        s = self.sulci
        fade = np.clip(np.minimum(t - s.low, s.high - t) / 8.0, 0.0, 1.0)
        active = fade > 0
        opening = np.zeros(THETA_BINS, dtype=np.float32)
        depth = np.zeros(THETA_BINS, dtype=np.float32)
        dip = np.zeros(THETA_BINS, dtype=np.float32)
        if not active.any() or brain_radius < 5.0:
            return opening, depth, dip
        angle = s.angle[active] + s.drift[active] * (t - 60.0)
        delta = np.abs(wrap_angle(THETA[None, :] - angle[:, None])) * np.float32(brain_radius)  # mm
        half = s.width[active, None] / 2.0
        profile = np.clip(1.0 - delta / (half + 0.4), 0.0, 1.0) * fade[active, None]
        envelope = np.clip(1.0 - delta / (4.0 * half + 2.0), 0.0, 1.0)
        opening = profile.max(axis=0)
        depth = ((profile > 0) * (s.depth[active, None] * fade[active, None])).max(axis=0)
        dip = (envelope * s.depth[active, None] * 0.7 * fade[active, None]).max(axis=0)
        return opening.astype(np.float32), depth.astype(np.float32), dip.astype(np.float32)


@dataclass
class Grid:
    """Pixel coordinates of one study in the head frame, restricted to the head's bounding box."""

    rows: int
    spacing: float
    anatomy: Anatomy
    box: tuple[slice, slice]
    X: np.ndarray
    Y: np.ndarray
    r: np.ndarray
    bins: np.ndarray
    wiggled: np.ndarray
    posterior: np.ndarray

    @classmethod
    def build(cls, anatomy: Anatomy, rows: int) -> Grid:
        """Coordinates of the ``rows`` x ``rows`` slice (FOV 230 mm) around the head."""
        spacing = FOV_MM / rows
        centre = (rows - 1) / 2.0
        axis = (np.arange(rows, dtype=np.float32) - centre) * spacing
        cos, sin = math.cos(anatomy.yaw), math.sin(anatomy.yaw)
        half_x, half_y = head_extent(anatomy, 1.0, HEADREST_MARGIN)
        cols = np.flatnonzero(np.abs(axis - anatomy.shift[0]) <= half_x)
        rws = np.flatnonzero(np.abs(axis - anatomy.shift[1]) <= half_y)
        box = (slice(int(rws[0]), int(rws[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        x = axis[box[1]][None, :] - np.float32(anatomy.shift[0])
        y = axis[box[0]][:, None] - np.float32(anatomy.shift[1])
        head_x = (cos * x + sin * y).astype(np.float32)
        head_y = (-sin * x + cos * y).astype(np.float32)
        r = np.hypot(head_x, head_y)
        theta = np.arctan2(head_y, head_x)
        bins = _theta_bins(theta)
        wiggle = theta + 0.045 * np.sin(r / 3.1 + 5.0 * theta) + 0.02 * np.sin(r / 1.7 - 3.0 * theta)
        return cls(
            rows=rows,
            spacing=spacing,
            anatomy=anatomy,
            box=box,
            X=head_x,
            Y=head_y,
            r=r,
            bins=bins,
            wiggled=_theta_bins(wiggle),
            posterior=(head_y > 0.55 * r).astype(np.float32),
        )

    def crop(self, scale: float) -> Grid:
        """The part of this grid that a head section of relative size ``scale`` can reach."""
        a = self.anatomy
        half_x, half_y = head_extent(a, scale, HEADREST_MARGIN)
        centre = (self.rows - 1) / 2.0
        col, row = a.shift[0] / self.spacing + centre, a.shift[1] / self.spacing + centre
        r0 = max(int(row - half_y / self.spacing) - 1, self.box[0].start)
        r1 = min(int(row + half_y / self.spacing) + 2, self.box[0].stop)
        c0 = max(int(col - half_x / self.spacing) - 1, self.box[1].start)
        c1 = min(int(col + half_x / self.spacing) + 2, self.box[1].stop)
        top, left = self.box[0].start, self.box[1].start
        local = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
        return Grid(
            rows=self.rows,
            spacing=self.spacing,
            anatomy=a,
            box=(slice(r0, r1), slice(c0, c1)),
            X=self.X[local],
            Y=self.Y[local],
            r=self.r[local],
            bins=self.bins[local],
            wiggled=self.wiggled[local],
            posterior=self.posterior[local],
        )

    def sub_box(self, cx: float, cy: float, radius: float) -> tuple[slice, slice] | None:
        """Bounding box (in box coordinates) of a disc in the head frame, or None when outside."""
        a = self.anatomy
        cos, sin = math.cos(a.yaw), math.sin(a.yaw)
        x = cos * cx - sin * cy + a.shift[0]
        y = sin * cx + cos * cy + a.shift[1]
        centre = (self.rows - 1) / 2.0
        col, row = x / self.spacing + centre, y / self.spacing + centre
        reach = radius / self.spacing + 2.0
        r0 = max(int(row - reach) - self.box[0].start, 0)
        r1 = min(int(row + reach) + 2 - self.box[0].start, self.r.shape[0])
        c0 = max(int(col - reach) - self.box[1].start, 0)
        c1 = min(int(col + reach) + 2 - self.box[1].start, self.r.shape[1])
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def ellipse(
        self, section: tuple[float, float, float, float, float]
    ) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """(box, 0..1 coverage) of an ellipse (cx, cy, rx, ry, angle) with a one-pixel soft edge."""
        cx, cy, rx, ry, angle = section
        box = self.sub_box(cx, cy, max(rx, ry))
        if box is None:
            return None
        dx = self.X[box] - np.float32(cx)
        dy = self.Y[box] - np.float32(cy)
        cos, sin = math.cos(angle), math.sin(angle)
        u = (cos * dx + sin * dy) / np.float32(rx)
        v = (-sin * dx + cos * dy) / np.float32(ry)
        q = np.sqrt(u * u + v * v)
        cover = ramp((1.0 - q) * np.float32(min(rx, ry)), self.spacing)
        return box, cover


def head_extent(anatomy: Anatomy, scale: float, margin: float) -> tuple[float, float]:
    """Half extents (mm) along the image axes of the rotated head section, plus ``margin``."""
    a, b = anatomy.semi_x * scale * 1.1, anatomy.semi_y * scale * 1.1
    cos, sin = math.cos(anatomy.yaw), math.sin(anatomy.yaw)
    return math.hypot(a * cos, b * sin) + margin, math.hypot(a * sin, b * cos) + margin


def _theta_bins(theta: np.ndarray) -> np.ndarray:
    scaled = (theta + np.float32(math.pi)) * np.float32(THETA_BINS / (2 * math.pi))
    return (scaled.astype(np.int32) % THETA_BINS).astype(np.intp)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.float32(math.pi)) % np.float32(2 * math.pi) - np.float32(math.pi)


def ramp(distance: np.ndarray, spacing: float, out: np.ndarray | None = None) -> np.ndarray:
    """0..1 coverage from a signed distance (mm, positive inside), linear over one pixel.

    ``out`` may be ``distance`` itself or another float32 buffer of its shape.
    """
    if out is None:
        out = np.multiply(distance, np.float32(1.0 / spacing), dtype=np.float32)
    else:
        np.multiply(distance, np.float32(1.0 / spacing), out=out)
    out += np.float32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out
