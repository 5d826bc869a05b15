"""Draw one axial slice of a phantom head (HU) with its hemorrhages, and count what was drawn.

Layers are composited from the outside in with one-pixel soft edges (``lerp``): air, scalp
(with a fat band) and head rest, skull (tables, diploe, suture lines), CSF, grey matter, white
matter, sulci; then deep grey nuclei, ventricles, cisterns, sylvian fissures, falx; then the
bleeds and beam hardening. Noise is added by the caller on the whole slice.

Whole-slice temporaries live in an :class:`Arena` of reused buffers: allocating and freeing
arrays of this size makes glibc trim and re-fault the heap, which cost 5-9x the arithmetic.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from triage.synth.anatomy import THETA, THETA_BINS, Grid, ramp, wrap_angle
from triage.synth.bleeds import Bleed, BleedOptions, ExtraAxial, Parenchymal, Subarachnoid, Ventricular

LOGGER = logging.getLogger(__name__)

AIR = -1000.0
FAT = -85.0
HEADREST = 110.0
AIR_CELLS = -850.0


def full_cover(spacing: float) -> float:
    """Fraction of a pixel a bleed must cover for the pixel to count towards a label.

    At the usual 0.45-0.6 mm pixels a counted pixel is essentially all blood (0.95), so a labelled
    slice shows blood density; coarse test matrices (0.9 mm, 1.8 mm...) can only ask for less.
    """
    if spacing < 0.65:
        return 0.95
    return 0.75 if spacing < 1.2 else 0.5

#: Sub-positions (mm) across the 5 mm slab used for the partial volume of the bleeds.
SLAB = (-1.67, 0.0, 1.67)


def lerp(target: np.ndarray, value: float | np.ndarray, weight: np.ndarray, tmp: np.ndarray | None = None) -> None:
    """``target += (value - target) * weight`` in place (composite ``value`` with coverage ``weight``)."""
    if tmp is None:
        tmp = np.subtract(value, target, dtype=np.float32)
    else:
        np.subtract(value, target, out=tmp)
    tmp *= weight
    target += tmp


class Arena:
    """Named float32 buffers reused from slice to slice, viewed in the shape of the current crop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.shape: tuple[int, int] = (0, 0)
        self._flat: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        flat = self._flat.get(name)
        if flat is None:
            flat = self._flat[name] = np.empty(self.size, dtype=np.float32)
        return flat[: self.shape[0] * self.shape[1]].reshape(self.shape)

    def zeros(self, name: str) -> np.ndarray:
        """The buffer ``name``, filled with zeros."""
        out = self(name)
        out.fill(0.0)
        return out


@dataclass
class SliceResult:
    """HU of the slice's crop, where the crop sits in the image, and the pixels of each subtype."""

    hu: np.ndarray
    box: tuple[slice, slice]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Context:
    """Per-slice arrays shared by the drawing steps (views into the arena, except img)."""

    t: float
    img: np.ndarray
    brain: np.ndarray
    inside: np.ndarray
    depth_b: np.ndarray
    sulcal: np.ndarray
    r_in: np.ndarray
    ventricles: np.ndarray
    cisterns: np.ndarray
    fissures: np.ndarray


class SliceRenderer:
    """Renders the slices of one study (anatomy, grid and bleeds fixed). Not thread-safe."""

    def __init__(self, grid: Grid, bleeds: list[Bleed], options: BleedOptions) -> None:
        self.full_grid = grid
        self.grid = grid  # the crop of the slice being drawn
        self.a = grid.anatomy
        self.bleeds = bleeds
        self.options = options
        self.min_pixels = options.min_area_mm2 / grid.spacing**2
        self.cover_needed = full_cover(grid.spacing)
        self.arena = Arena(grid.r.size)

    def render(self, t: float) -> SliceResult:
        """Draw the slice at height ``t`` (mm above the skull base)."""
        a = self.a
        scale = a.section_scale(t)
        if scale < 0.08:
            return SliceResult(np.full((0, 0), AIR, dtype=np.float32), (slice(0, 0), slice(0, 0)))
        g = self.grid = self.full_grid.crop(scale)
        self.arena.shape = g.r.shape
        img = np.full(g.r.shape, AIR, dtype=np.float32)
        skin = a.skin_table(t)
        bone_outer = skin - a.scalp_table(t)
        r_in_table = np.maximum(bone_outer - a.skull_table(t), 2.0).astype(np.float32)
        r_in = np.take(r_in_table, g.bins, out=self.arena("r_in"), mode="wrap")
        counts: dict[str, int] = {}
        extra, thickness = self._extra_axial(t, r_in, counts)
        brain_table = (r_in_table - np.maximum(a.gap, thickness + 0.4 * (thickness > 0))).astype(np.float32)
        ctx = self._layers(t, img, skin, bone_outer, r_in, brain_table, thickness, extra)
        self._structures(ctx, brain_table)
        for bleed in self.bleeds:
            if bleed.touches(t):
                self._bleed(ctx, bleed, counts)
        self._beam_hardening(ctx)
        return SliceResult(img, g.box, counts)

    # -- skull, brain surface, sulci ------------------------------------------------------------

    def _extra_axial(
        self, t: float, r_in: np.ndarray, counts: dict[str, int]
    ) -> tuple[list[tuple[ExtraAxial, np.ndarray]], np.ndarray]:
        """Epidural / subdural bleeds that pass the area rule with their thickness per angle.

        The coverage returned is that of ``r > r_in - thickness`` (averaged over the slab); the
        caller composites it into the intracranial fill, so it never bleeds into the bone.
        """
        g, buf = self.grid, self.arena
        thickness = np.zeros(THETA_BINS, dtype=np.float32)
        drawn: list[tuple[ExtraAxial, np.ndarray]] = []
        for bleed in self.bleeds:
            if not isinstance(bleed, ExtraAxial) or not bleed.touches(t):
                continue
            cover = np.zeros(g.r.shape, dtype=np.float32)
            d, w = buf("d"), buf("w")
            for dz in SLAB:
                table = bleed.thickness_table(t + dz)
                if table.max() <= 0:
                    continue
                np.take(table, g.bins, out=d, mode="wrap")
                np.greater(d, 0.0, out=w)
                d -= r_in
                d += g.r  # r - (r_in - thickness)
                w *= ramp(d, g.spacing, out=d)
                cover += w
            cover *= np.float32(1.0 / len(SLAB))
            np.subtract(r_in, g.r, out=d)
            inside = ramp(d, g.spacing, out=d)
            inside *= cover
            count = int(np.count_nonzero(inside >= self.cover_needed))
            if count >= self.min_pixels:
                counts[bleed.subtype] = counts.get(bleed.subtype, 0) + count
                np.maximum(thickness, bleed.thickness_table(t), out=thickness)
                drawn.append((bleed, cover))
        return drawn, thickness

    def _band(self, outer: np.ndarray, inner_offset: float, width: float) -> np.ndarray:
        """Coverage of the band ``outer - inner_offset - width < r < outer - inner_offset`` (buffer "w")."""
        g, buf = self.grid, self.arena
        d, w = buf("d"), buf("w")
        np.subtract(outer, g.r, out=d)
        d -= np.float32(inner_offset)
        ramp(d, g.spacing, out=w)
        np.subtract(g.r, outer, out=d)
        d += np.float32(inner_offset + width)
        w *= ramp(d, g.spacing, out=d)
        return w

    def _layers(
        self,
        t: float,
        img: np.ndarray,
        skin: np.ndarray,
        bone_outer: np.ndarray,
        r_in: np.ndarray,
        brain_table: np.ndarray,
        thickness: np.ndarray,
        extra: list[tuple[ExtraAxial, np.ndarray]],
    ) -> _Context:
        g, a, sp, buf = self.grid, self.a, self.grid.spacing, self.arena
        r, bins, tmp, d, w = g.r, g.bins, buf("tmp"), buf("d"), buf("w")
        skin2d = np.take(skin, bins, out=buf("skin"), mode="wrap")
        np.subtract(skin2d, r, out=d)
        lerp(img, a.scalp, ramp(d, sp, out=w), tmp)
        lerp(img, FAT, self._band(skin2d, 1.3, 1.5), tmp)
        rest = self._band(skin2d, -9.5, 2.5)
        rest *= g.posterior
        lerp(img, HEADREST, rest, tmp)
        bone2d = np.take(bone_outer, bins, out=buf("skin"), mode="wrap")
        bone_table = (a.bone * (1.0 - 0.8 * a.suture_table(t, sp))).astype(np.float32)
        np.subtract(bone2d, r, out=d)
        lerp(img, np.take(bone_table, bins, out=buf("w2"), mode="wrap"), ramp(d, sp, out=w), tmp)
        np.subtract(bone2d, r, out=d)
        d -= np.float32(1.5)
        diploe = ramp(d, sp, out=w)
        np.subtract(r, r_in, out=d)
        d -= np.float32(1.5)
        diploe *= ramp(d, sp, out=d)
        diploe *= np.float32(0.85)
        lerp(img, a.diploe, diploe, tmp)
        inside = buf("inside")
        np.subtract(r_in, r, out=d)
        ramp(d, sp, out=inside)
        if extra:  # the intracranial fill: CSF, or blood where an extra-axial bleed covers it
            fill = np.full(r.shape, a.csf, dtype=np.float32)
            for bleed, cover in extra:
                lerp(fill, bleed.hu, cover)
            lerp(img, fill, inside, tmp)
        else:
            lerp(img, a.csf, inside, tmp)
        mask = self._base_mask(t, img, inside)
        depth_b = np.take(brain_table, bins, out=buf("depth_b"), mode="wrap")
        depth_b -= r
        brain = ramp(depth_b, sp, out=buf("brain"))
        if mask is not None:
            brain *= mask
        lerp(img, a.grey, brain, tmp)
        opening, depth, dip = a.sulcus_tables(t, float(np.mean(brain_table)))
        opening *= np.clip(1.0 - thickness / 2.0, 0.0, 1.0)
        np.take(dip, g.wiggled, out=d, mode="wrap")
        np.subtract(depth_b, d, out=d)
        d -= np.float32(a.cortex)
        white = ramp(d, sp, out=w)
        white *= brain
        lerp(img, a.white, white, tmp)
        sulcal = buf("sulcal")
        np.take(depth, g.wiggled, out=d, mode="wrap")
        d -= depth_b
        ramp(d, sp, out=sulcal)
        sulcal *= np.take(opening, g.wiggled, out=w, mode="wrap")
        sulcal *= brain
        lerp(img, a.csf, sulcal, tmp)
        spaces = (buf.zeros("ventricles"), buf.zeros("cisterns"), buf.zeros("fissures"))
        return _Context(t, img, brain, inside, depth_b, sulcal, r_in, *spaces)

    def _base_mask(self, t: float, img: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
        """Skull-base slices: brain only in the fossae, bone with air cells elsewhere inside."""
        weight = self.a.base_weight(t)
        if weight <= 0:
            return None
        g, a = self.grid, self.a
        fossae = np.zeros(g.r.shape, dtype=np.float32)
        grow = 0.75 + 0.25 * min(max((t + 5.0) / 30.0, 0.0), 1.0)
        for shape in a.structures["base"]:
            section = shape.section(t)
            if section is None:
                continue
            cx, cy, rx, ry, angle = section
            drawn = g.ellipse((cx, cy, rx * grow, ry * grow, angle))
            if drawn is not None:
                box, cover = drawn
                np.maximum(fossae[box], cover, out=fossae[box])
        mask = 1.0 - weight * (1.0 - fossae)
        lerp(img, a.bone * 0.8, inside * (1.0 - mask))
        for shape in a.structures["air"]:
            section = shape.section(t)
            drawn = g.ellipse(section) if section else None
            if drawn is not None:
                box, cover = drawn
                lerp(img[box], AIR_CELLS, cover * (1.0 - mask[box]) * inside[box])
        return mask

    # -- deep structures --------------------------------------------------------------------------

    def _draw(self, ctx: _Context, name: str, value: float, into: np.ndarray | None = None) -> None:
        for shape in self.a.structures[name]:
            section = shape.section(ctx.t)
            drawn = self.grid.ellipse(section) if section else None
            if drawn is None:
                continue
            box, cover = drawn
            cover *= ctx.brain[box]
            lerp(ctx.img[box], value, cover)
            if into is not None:
                np.maximum(into[box], cover, out=into[box])

    def _structures(self, ctx: _Context, brain_table: np.ndarray) -> None:
        a, t = self.a, ctx.t
        self._draw(ctx, "deep_grey", a.deep_grey)
        if t < 30:
            self._draw(ctx, "brainstem", a.deep_grey - 2.0)
        self._cisterns(ctx)
        self._draw(ctx, "ventricles", a.csf, into=ctx.ventricles)
        if 30.0 <= t <= 56.0:
            self._sylvian(ctx, brain_table)
        if t >= 30.0:
            self._falx(ctx)

    def _cisterns(self, ctx: _Context) -> None:
        """Midbrain with the ambient cistern around it, and the suprasellar cistern in front."""
        g, a = self.grid, self.a
        for shape in a.structures["midbrain"]:
            section = shape.section(ctx.t)
            if section is None:
                continue
            cx, cy, rx, ry, angle = section
            outer = g.ellipse((cx, cy, rx + 2.5, ry + 2.0, angle))
            inner = g.ellipse(section)
            if outer is None or inner is None:
                continue
            box, cover = outer
            cover *= ctx.brain[box]
            lerp(ctx.img[box], a.csf, cover)
            np.maximum(ctx.cisterns[box], cover, out=ctx.cisterns[box])
            ibox, icover = inner
            lerp(ctx.img[ibox], a.deep_grey, icover)
            ctx.cisterns[ibox] *= 1.0 - icover
        self._draw(ctx, "suprasellar", a.csf, into=ctx.cisterns)

    def _sylvian(self, ctx: _Context, brain_table: np.ndarray) -> None:
        """The sylvian fissures: a CSF cleft from the lateral surface, wide at its mouth, bending
        backwards along the insula."""
        a = self.a
        fade = min(ctx.t - 30.0, 56.0 - ctx.t, 6.0) / 6.0
        width = 1.2 + a.gap
        for side in (1.0, -1.0):
            angle = -0.35 if side > 0 else math.pi + 0.35
            index = int((angle + math.pi) / (2 * math.pi) * THETA_BINS) % THETA_BINS
            outer = float(brain_table[index]) + 1.0
            mouth = np.array([outer * math.cos(angle), outer * math.sin(angle)], dtype=np.float32)
            target = np.array([side * 17.0 * a.scale, -5.0 * a.scale], dtype=np.float32)
            bend = mouth + 0.45 * (target - mouth)
            insula = bend + np.array([-side * 4.0, 11.0], dtype=np.float32) * np.float32(a.scale)
            self._cleft(ctx, mouth, bend, 1.6 * width, fade)
            self._cleft(ctx, bend, insula, width, fade)

    def _cleft(self, ctx: _Context, p0: np.ndarray, p1: np.ndarray, width: float, fade: float) -> None:
        """A CSF capsule from ``p0`` to ``p1`` (head frame, mm), recorded as a fissure."""
        g = self.grid
        mid = (p0 + p1) / 2
        box = g.sub_box(float(mid[0]), float(mid[1]), float(np.linalg.norm(p1 - p0)) / 2 + width)
        if box is None:
            return
        dx, dy = g.X[box] - p0[0], g.Y[box] - p0[1]
        seg = p1 - p0
        along = np.clip((dx * seg[0] + dy * seg[1]) / float(seg @ seg), 0.0, 1.0)
        dist = np.hypot(dx - along * seg[0], dy - along * seg[1])
        cover = ramp(width / 2.0 - dist, g.spacing) * np.float32(fade)
        cover *= ctx.brain[box]
        lerp(ctx.img[box], self.a.csf, cover)
        np.maximum(ctx.fissures[box], cover, out=ctx.fissures[box])

    def _falx(self, ctx: _Context) -> None:
        """Interhemispheric fissure (CSF) and the falx (dense dura) on the midline."""
        g, a, t, buf = self.grid, self.a, ctx.t, self.arena
        if t > 92.0:
            gap = 0.0
        elif t >= 45.0:
            gap = 36.0 * a.scale * min(1.0, (92.0 - t) / 10.0)
        else:
            gap = 24.0 * a.scale
        gate, d, w, tmp = buf("w2"), buf("d"), buf("w"), buf("tmp")
        if t >= 45.0:
            np.abs(g.Y, out=d)
        else:
            np.negative(g.Y, out=d)
        d -= np.float32(gap)
        ramp(d, g.spacing, out=gate)
        np.abs(g.X, out=d)
        np.negative(d, out=d)
        d += np.float32(0.9 + 0.5 * a.gap)
        fissure = ramp(d, g.spacing, out=w)
        fissure *= gate
        fissure *= ctx.brain
        lerp(ctx.img, a.csf, fissure, tmp)
        d -= np.float32(0.35 + 0.5 * a.gap)  # now 0.55 - |X|
        falx = ramp(d, g.spacing, out=w)
        falx *= gate
        falx *= ctx.inside
        lerp(ctx.img, a.falx, falx, tmp)

    # -- hemorrhages ------------------------------------------------------------------------------

    def _bleed(self, ctx: _Context, bleed: Bleed, counts: dict[str, int]) -> None:
        everywhere = (slice(None), slice(None))
        if isinstance(bleed, Parenchymal):
            self._parenchymal(ctx, bleed, counts)
        elif isinstance(bleed, Ventricular):
            d = self.arena("d")
            np.subtract(self.grid.Y, np.float32(bleed.level), out=d)
            cover = ramp(d, self.grid.spacing, out=d)
            cover *= ctx.ventricles
            self._apply(ctx, bleed, everywhere, cover, counts)
        elif isinstance(bleed, Subarachnoid):
            # blood mixed with the CSF it replaces, never below the subtle density
            hu = max(self.a.csf + bleed.fill * (bleed.hu - self.a.csf), self.options.subtle_contrast[0])
            self._apply(ctx, bleed, everywhere, self._sah_cover(ctx, bleed), counts, hu)

    def _apply(
        self,
        ctx: _Context,
        bleed: Bleed,
        box: tuple[slice, slice],
        cover: np.ndarray,
        counts: dict[str, int],
        hu: float | None = None,
    ) -> bool:
        """Draw ``bleed`` with coverage ``cover`` if it covers enough pixels; count them."""
        count = int(np.count_nonzero(cover >= self.cover_needed))
        if count < self.min_pixels:
            return False
        counts[bleed.subtype] = counts.get(bleed.subtype, 0) + count
        lerp(ctx.img[box], bleed.hu if hu is None else hu, cover)
        return True

    def _sah_cover(self, ctx: _Context, bleed: Subarachnoid) -> np.ndarray:
        g, out = self.grid, self.arena("d")
        if bleed.kind == "basal":
            np.copyto(out, ctx.cisterns)
        elif bleed.kind == "sylvian":
            np.copyto(out, ctx.fissures)
            if bleed.side:
                out *= g.X * np.float32(bleed.side) > 0
        else:
            delta = np.abs(wrap_angle(THETA - bleed.angle))
            sector = np.clip((bleed.half_angle - delta) / 0.1, 0.0, 1.0).astype(np.float32)
            np.take(sector, g.bins, out=out, mode="wrap")
            out *= ctx.sulcal
        return out

    def _parenchymal(self, ctx: _Context, bleed: Parenchymal, counts: dict[str, int]) -> None:
        g = self.grid
        shape = bleed.shape
        reach = max(shape.rx, shape.ry) * 1.4 + bleed.oedema_width
        box = g.sub_box(shape.cx, shape.cy, reach)
        if box is None:
            return
        dx = g.X[box] - np.float32(shape.cx)
        dy = g.Y[box] - np.float32(shape.cy)
        cos, sin = math.cos(shape.angle), math.sin(shape.angle)
        u = (cos * dx + sin * dy) / np.float32(shape.rx)
        v = (-sin * dx + cos * dy) / np.float32(shape.ry)
        phi = np.arctan2(v, u)
        lobed = np.ones_like(u)
        for k, amplitude, phase in bleed.lobes:
            lobed += np.float32(amplitude) * np.cos(np.float32(k) * phi + np.float32(phase))
        rho = np.sqrt(u * u + v * v) / lobed
        size = min(shape.rx, shape.ry)
        cover = np.zeros(rho.shape, dtype=np.float32)
        oedema = np.zeros(rho.shape, dtype=np.float32)
        for dz in SLAB:
            q = 1.0 - ((ctx.t + dz - shape.tz) / shape.hz) ** 2
            if q <= 0:
                continue
            k = math.sqrt(q)
            cover += ramp((k - rho) * size, g.spacing)
            if bleed.oedema_width:
                oedema += ramp((k - rho) * size + bleed.oedema_width, g.spacing)
        cover *= np.float32(1.0 / len(SLAB))
        cover *= ctx.brain[box]
        if np.count_nonzero(cover >= self.cover_needed) < self.min_pixels:
            return
        if bleed.oedema_width:
            oedema *= np.float32(1.0 / len(SLAB))
            oedema *= ctx.brain[box]
            lerp(ctx.img[box], bleed.oedema_hu, oedema)
        self._apply(ctx, bleed, box, cover, counts)

    def _beam_hardening(self, ctx: _Context) -> None:
        """Mild beam hardening: brighter cortex near the inner table, cupping, and at the skull base
        a dark band between the petrous bones."""
        g, a, buf = self.grid, self.a, self.arena
        d, w = buf("d"), buf("w")
        np.maximum(ctx.depth_b, 0.0, out=d)
        d *= np.float32(-0.5)
        np.exp(d, out=d)
        d *= np.float32(a.rim)
        d *= ctx.brain
        ctx.img += d
        np.maximum(ctx.r_in, 1.0, out=w)
        np.divide(g.r, w, out=w)
        np.square(w, out=w)
        w *= np.float32(a.cupping)
        w *= ctx.brain
        ctx.img += w
        weight = a.base_weight(ctx.t)
        if weight > 0:
            band = np.exp(-np.square((g.Y - 14.0 * a.scale) / np.float32(4.0)))
            band *= np.abs(g.X) < 38.0 * a.scale
            band *= ctx.brain
            band *= np.float32(a.streak * weight)
            ctx.img -= band
