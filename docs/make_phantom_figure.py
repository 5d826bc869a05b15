"""Draw docs/phantoms.png: one phantom slice of each hemorrhage subtype (and a normal head), windowed.

Rows: brain window (40/80, linear), subdural window (50/130, linear), and the three sigmoid
channels (brain, subdural, bone) as RGB, which is what the model sees. Run from the repository root::

    .venv/bin/python docs/make_phantom_figure.py [--out docs/phantoms.png] [--seed 7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from triage.domain import SUBTYPES  # noqa: E402
from triage.imaging import linear_window, to_hu, window_stack  # noqa: E402
from triage.synth import BleedOptions, make_study  # noqa: E402

CROP = (slice(40, 472), slice(40, 472))


def panels(seed: int) -> list[tuple[str, np.ndarray]]:
    """(title, HU slice) for each subtype at its largest extent, then a normal head."""
    options = BleedOptions(subtle_fraction=0.0)  # clear examples; the data sets also have subtle ones
    out = []
    for offset, subtype in enumerate(SUBTYPES):
        study = make_study(seed + offset, subtypes=(subtype,), options=options)
        index = int(np.argmax(study.pixels[:, SUBTYPES.index(subtype)]))
        positive = int(study.labels[:, 0].sum())
        out.append((f"{subtype}\n(slice {index + 1}, {positive} positive slices)", to_hu(study.datasets[index])))
    normal = make_study(seed + 10)
    out.append(("no hemorrhage\n(slice 15)", to_hu(normal.datasets[14])))
    return out


def draw(seed: int, path: Path) -> None:
    items = panels(seed)
    fig, axes = plt.subplots(3, len(items), figsize=(2.6 * len(items), 8.2), facecolor="black")
    rows = ("brain 40/80", "subdural 50/130", "sigmoid RGB")
    for column, (title, hu) in enumerate(items):
        hu = hu[CROP]
        images = [
            linear_window(hu, 40, 80),
            linear_window(hu, 50, 130),
            np.moveaxis(window_stack(hu, "sigmoid"), 0, -1),
        ]
        for row, image in enumerate(images):
            ax = axes[row, column]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, color="white", fontsize=9)
            if column == 0:
                ax.set_ylabel(rows[row], color="white", fontsize=9)
    fig.suptitle(f"triage synth phantoms (seed {seed}): one slice per subtype", color="white", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=72, facecolor="black")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("phantoms.png"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    draw(args.seed, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
