"""Training throughput on the CPU: images/s of one optimisation step (forward, BCE, backward, AdamW).

Recipes measured in the same run, interleaved:
  resnet50-224-nchw     the paper's network at 224, NCHW (baseline)
  resnet50-224          the same in channels-last, as triage.training trains it
  resnet18-224-pool2    the demo recipe (ResNet-18, 224 input average-pooled to 112 inside the network)
and, with --data DIR --labels CSV, the full path of `triage train` for the demo recipe: DICOM reading,
preprocessing in DataLoader workers, balanced batches.

Usage: .venv/bin/python benchmarks/training.py [--batch 16] [--steps 3] [--threads 2]
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 helps big eager batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from triage.model.network import build_network

RECIPES = {
    "resnet50-224-nchw": ("resnet50", 224, 1, False),
    "resnet50-224": ("resnet50", 224, 1, True),
    "resnet18-224-pool2": ("resnet18", 224, 2, True),
}


def step_rate(backbone: str, size: int, pool: int, channels_last: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    network = build_network(backbone, 1, input_pool=pool).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    network.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch, 1)).float()

    def step() -> None:
        loss = F.binary_cross_entropy_with_logits(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def full_path_rate(data: Path, labels: Path, batch: int, steps: int, workers: int) -> float:
    from triage.training.dataset import SliceDataset, loader
    from triage.training.kaggle import read_kaggle
    from triage.training.sampler import BalancedBatchSampler

    table = read_kaggle(data, labels, workers=workers, progress=False)
    network = build_network("resnet18", 1, input_pool=2).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    sampler = BalancedBatchSampler(table.labels, batch_size=batch, steps=steps + 1, seed=0)
    dataset = SliceDataset(table, image_size=224, windowing="sigmoid", augmented=True)
    started, seen = 0.0, 0
    for i, (x, y) in enumerate(loader(dataset, workers=workers, batch_sampler=sampler)):
        if i == 1:
            started, seen = time.perf_counter(), 0
        loss = F.binary_cross_entropy_with_logits(network(x.contiguous(memory_format=torch.channels_last)), y[:, :1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(x)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, help="Kaggle-layout phantoms for the full-path figure")
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tunables = "set" if os.environ.get("GLIBC_TUNABLES") else "unset"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} threads, batch {args.batch}, "
          f"load average {os.getloadavg()[0]:.2f}, GLIBC_TUNABLES={tunables}")
    rates: dict[str, list[float]] = {name: [] for name in RECIPES}
    for _ in range(args.rounds):
        for name, recipe in RECIPES.items():
            rates[name].append(step_rate(*recipe, args.batch, args.steps))
    baseline = statistics.median(rates["resnet50-224-nchw"])
    print(f"{'recipe':<24}{'images/s':>10}{'x baseline':>12}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:<24}{rate:>10.2f}{rate / baseline:>12.2f}")
    if args.data and args.labels:
        rate = full_path_rate(args.data, args.labels, 32, max(args.steps, 5), args.workers)
        print(f"{'demo full path (DICOM)':<24}{rate:>10.2f}   (resnet18-224-pool2, batch 32, {args.workers} worker(s))")


if __name__ == "__main__":
    main()
