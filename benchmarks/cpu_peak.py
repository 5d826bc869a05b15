"""This CPU's dense fp32 rate, measured in the run: the yardstick of a benchmark's "fraction of peak".

PERFORMANCE.md's 350 GFLOP/s is the FMA peak of the 2-vCPU Xeon (Emerald Rapids) the project was first measured
on. Development and CI machines are not always that CPU: an AMD EPYC (Zen 4) runs AVX-512 on 256-bit units and
has about two thirds of it. So the benchmarks measure, on the same threads and in the same run, the best rate of
two dense kernels that come close to the FMA peak: MKL's sgemm (fast on Intel, slower on AMD) and a oneDNN 1x1
convolution with 2048 channels in channels-last (a GEMM by oneDNN, fast on both). Pass ``--peak-gflops`` to a
benchmark to use a known FMA peak instead.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


def _best_seconds(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def dense_gflops(threads: int, repeats: int = 5) -> float:
    """The best GFLOP/s of an fp32 sgemm (2048^3) and a oneDNN 1x1 convolution (2048 channels) on ``threads``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
        sgemm = 2 * 2048**3 / _best_seconds(lambda: torch.mm(a, b), repeats)
        conv = torch.nn.Conv2d(2048, 2048, 1, bias=False).eval().to(memory_format=torch.channels_last)
        x = torch.rand(16, 2048, 14, 14).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            onednn = 2 * 16 * 14 * 14 * 2048 * 2048 / _best_seconds(lambda: conv(x), repeats)
        return max(sgemm, onednn) / 1e9
    finally:
        torch.set_num_threads(previous)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    for n in sorted({1, torch.get_num_threads()}):
        print(f"{cpu_name()}, {n} thread(s): best dense fp32 rate {dense_gflops(n):.0f} GFLOP/s")
