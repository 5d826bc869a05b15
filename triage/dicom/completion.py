"""When a series is provably complete before its quiet time is over. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

#: Relative tolerance on the spacing of slice positions (and 0.01 mm absolute).
SPACING_TOLERANCE = 0.05


def is_complete(expected: int | None, z_positions: Sequence[float | None]) -> bool:
    """Whether the slices of a series are all there.

    A series is complete when the scanner announced its size (Images in Acquisition) and that many
    slices arrived, and their positions along the normal, when every slice has one, form a single
    contiguous, evenly spaced run (no gap, no repeated position). Without an announced size the
    quiet time decides.

    Parameters
    ----------
    expected
        Images in Acquisition of the series, or None.
    z_positions
        Position of each received slice along the slice normal (mm), None where unknown.
    """
    if expected is None or len(z_positions) != expected:
        return False
    known = [z for z in z_positions if z is not None]
    if len(known) != len(z_positions) or len(known) < 3:
        return True  # the count matches and the geometry cannot say more
    return evenly_spaced(known)


def evenly_spaced(z_positions: Sequence[float]) -> bool:
    """Whether the positions, sorted, are distinct and equally spaced (within the tolerance)."""
    ordered = sorted(z_positions)
    steps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    if not steps:
        return True
    spacing = (ordered[-1] - ordered[0]) / len(steps)
    if spacing <= 0.01:
        return False
    tolerance = max(0.01, SPACING_TOLERANCE * spacing)
    return all(abs(step - spacing) <= tolerance for step in steps)
