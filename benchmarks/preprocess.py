"""Preprocessing throughput: DICOM file -> HU -> three sigmoid windows -> 448 crop (-> 224 max-pool).

Writes phantom slices to a temporary folder (timing the phantom generator on the way), then times,
interleaved, on the same files in the same run:

* ``read``:      dcmread + decoded pixels only (the floor);
* ``naive``:     a straightforward reference (float64 HU, the paper's sigmoid formula with np.exp on
                 the whole 512 x 512 slice, stack, crop, reshape max-pool);
* ``triage``:    :func:`triage.imaging.preprocess_file` (float32, crop before windowing, pool
                 before windowing on the 224 path);

and prints slices/s, the ratios to the naive path, and the largest difference between the two
outputs. Usage::

    python benchmarks/preprocess.py [--studies 2] [--repeats 5] [--files DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from triage.imaging import WINDOWS, preprocess_file  # noqa: E402
from triage.synth import make_study  # noqa: E402


def naive(path: Path, size: int) -> np.ndarray:
    """The obvious implementation, as a reader of the paper would write it."""
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    hu = np.maximum(hu, -1024.0)
    channels = []
    for level, width in WINDOWS.values():
        scale = math.log(1.0 / (1.0 / 255.0) - 1.0)
        w, b = 2.0 / width * scale, -2.0 * level / width * scale
        with np.errstate(over="ignore"):
            channels.append(1.0 / (1.0 + np.exp(-(w * hu + b))))
    stack = np.stack(channels)[:, 32:480, 32:480]
    if size == 224:
        stack = stack.reshape(3, 224, 2, 224, 2).max(axis=(2, 4))
    return stack.astype(np.float32)


def read_only(path: Path, size: int) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def write_phantoms(folder: Path, studies: int) -> tuple[list[Path], list[float]]:
    paths, seconds = [], []
    for seed in range(studies):
        started = time.process_time()
        study = make_study(1000 + seed, slices=32, subtypes=("subdural",) if seed % 2 else ())
        seconds.append(time.process_time() - started)
        for index, ds in enumerate(study.datasets):
            path = folder / f"s{seed}_{index:02d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths, seconds


def time_pass(function: Callable[[Path, int], np.ndarray], paths: list[Path], size: int) -> float:
    started = time.perf_counter()
    for path in paths:
        function(path, size)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2, help="phantom studies of 32 slices to write")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (median reported)")
    parser.add_argument("--files", type=Path, help="time these DICOM files instead of phantoms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.files:
            paths = sorted(p for p in args.files.rglob("*.dcm"))
        else:
            paths, seconds = write_phantoms(Path(tmp), args.studies)
            print(f"phantom generation: {statistics.median(seconds):.3f} s CPU per 32-slice 512x512 study "
                  f"(median of {len(seconds)}, one core)")
        functions: dict[str, Callable[[Path, int], np.ndarray]] = {
            "read": read_only,
            "naive": naive,
            "triage": lambda p, s: preprocess_file(p, s, "sigmoid"),
        }
        rates: dict[tuple[str, int], list[float]] = {(n, s): [] for n in functions for s in (448, 224)}
        for _ in range(args.repeats):
            for size in (448, 224):
                for name, function in functions.items():
                    rates[(name, size)].append(time_pass(function, paths, size))
        diff = max(float(np.max(np.abs(naive(p, s) - preprocess_file(p, s)))) for p in paths[:8] for s in (448, 224))
    print(f"{len(paths)} slices, {args.repeats} interleaved rounds, 1 thread; slices/s (median):")
    median = {key: statistics.median(values) for key, values in rates.items()}
    for size in (448, 224):
        line = "  ".join(f"{name} {median[(name, size)]:7.1f}" for name in functions)
        ratio = median[("triage", size)] / median[("naive", size)]
        print(f"  {size}: {line}   triage/naive = {ratio:.2f}x")
    print(f"  triage 224 / triage 448 = {median[('triage', 224)] / median[('triage', 448)]:.2f}x")
    print(f"  largest |triage - naive| over 8 slices: {diff:.2e}")


if __name__ == "__main__":
    main()
