"""Inference throughput of the stage-1 network: slices/s per backend, fraction of the CPU's peak, agreement.

Backends measured in the same run, interleaved (rounds), on random weights and random inputs; "% of peak" is
against --peak-gflops, by default the dense fp32 rate measured at the start (cpu_peak.py):
  eager-b1      torchvision ResNet, fp32, NCHW, one slice at a time (the naive baseline)
  torch-bN      triage.model.Classifier(backend="torch"): channels-last, inference_mode, batch N
  onnx-bN       triage.model.Classifier(backend="onnx"): ONNX Runtime on the same weights, batch N
  cuda-amp-bN   (only where CUDA is present) Classifier on the GPU with float16 autocast

Usage: .venv/bin/python benchmarks/inference.py [--sizes 224 448] [--batch 8] [--threads 2] [--rounds 3]
Large eager batches suffer from glibc malloc churn on this machine; run with
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 to see the best eager figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cpu_peak import cpu_name, dense_gflops  # benchmarks/ is on sys.path when this file runs
from torch.utils.flop_counter import FlopCounterMode

from triage.model import Classifier, save_model_directory
from triage.model.directory import STAGE_OUTPUTS
from triage.model.network import build_network


def flops_per_image(backbone: str, size: int) -> float:
    """Forward FLOPs (2 per multiply-add) of one image, counted by torch."""
    network = build_network(backbone, 1).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def measure(run, x: np.ndarray, seconds: float) -> float:
    """Slices per second of ``run(x)`` repeated for at least ``seconds`` (after one warm-up call)."""
    run(x)
    done, started = 0, time.perf_counter()
    while True:
        run(x)
        done += len(x)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def eager_batch1(network: torch.nn.Module):
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([torch.sigmoid(network(torch.from_numpy(x[i : i + 1]))).numpy()
                                   for i in range(len(x))])[:, 0]
    return run


def spread_head(network: torch.nn.Module, x: torch.Tensor) -> None:
    """Rescale the random head so that the probe batch gives logits of mean 0 and spread 1.

    A random ResNet-50 gives logits near +20 for every input, whose sigmoid is exactly 1.0 in
    float32: agreement between backends would then be measured on saturated values only.
    """
    with torch.no_grad():
        logits = network(x)
        scale = logits.std(dim=0).clamp_min(1e-6)
        network.fc.weight /= scale[:, None]
        network.fc.bias.copy_(network.fc.bias / scale - (logits / scale).mean(dim=0))


def model_directory(path: Path, backbone: str, size: int, x: np.ndarray) -> Path:
    torch.manual_seed(0)
    networks = {stage: build_network(backbone, len(outputs)).eval() for stage, outputs in STAGE_OUTPUTS.items()}
    for network in networks.values():
        spread_head(network, torch.from_numpy(x))
    save_model_directory(path, networks, name=f"bench-{backbone}", backbone=backbone, image_size=size)
    return path


def bench_size(args: argparse.Namespace, size: int, workdir: Path) -> None:
    batch = args.batch
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    model_dir = model_directory(workdir / f"m{size}", args.backbone, size, x)
    variants = {}
    torch_classifier = Classifier(model_dir, device="cpu", threads=args.threads, batch_size=batch)
    reference_net = build_network(args.backbone, 1).eval()
    reference_net.load_state_dict(torch_classifier._torch["detect"].network.state_dict())
    variants["eager-b1 (baseline)"] = eager_batch1(reference_net)
    variants[f"torch-b{batch}"] = torch_classifier.detect
    started = time.perf_counter()
    onnx_classifier = Classifier(model_dir, device="cpu", threads=args.threads, batch_size=batch, backend="onnx")
    onnx_load = time.perf_counter() - started
    variants[f"onnx-b{batch}"] = onnx_classifier.detect
    if torch.cuda.is_available():
        variants[f"cuda-amp-b{args.gpu_batch}"] = Classifier(model_dir, device="cuda", batch_size=args.gpu_batch).detect
    reference = variants["eager-b1 (baseline)"](x)
    assert 0.01 < reference.min() and reference.max() < 0.99, "probe outputs are saturated"
    agreement = {name: float(np.abs(run(x) - reference).max()) for name, run in variants.items()}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            rates[name].append(measure(run, x, args.seconds))
    flops = flops_per_image(args.backbone, size)
    baseline = statistics.median(rates["eager-b1 (baseline)"])
    print(f"\n{args.backbone} at {size}x{size}: {flops / 1e9:.2f} GFLOP per slice; "
          f"{args.threads} threads; peak {args.peak_gflops:.0f} GFLOP/s -> limit "
          f"{args.peak_gflops * 1e9 / flops:.1f} slices/s; ONNX export+check at load {onnx_load:.1f} s")
    print(f"{'variant':<22}{'slices/s':>10}{'x baseline':>12}{'% of peak':>11}{'max |dP| vs eager fp32':>25}")
    for name, values in rates.items():
        rate = statistics.median(values)
        peak = "" if name.startswith("cuda") else f"{100 * rate * flops / (args.peak_gflops * 1e9):.0f} %"
        print(f"{name:<22}{rate:>10.2f}{rate / baseline:>12.2f}{peak:>11}{agreement[name]:>25.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="fp32 FMA peak of the CPU (default: the dense rate measured now, see cpu_peak.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"GLIBC_TUNABLES={'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}")
    if args.peak_gflops is None:
        args.peak_gflops = dense_gflops(args.threads)
        print(f"peak: best dense fp32 rate measured now on {args.threads} threads, {args.peak_gflops:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            bench_size(args, size, Path(workdir))


if __name__ == "__main__":
    main()
