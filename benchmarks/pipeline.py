"""Worker benchmarks: time-to-alert over real DICOM, and worker throughput against a naive baseline.

Usage::

    python benchmarks/pipeline.py [--model MODEL_DIR] [--runs 5] [--slices 32] [--backend onnx]

1. Time-to-alert: a 32-slice positive phantom is sent with DCMTK ``storescu`` (TCP_NODELAY=1) to an
   in-process daemon (DICOM receiver + worker, as ``triage serve`` runs them); the figure is the time from
   the receipt of the last slice to the outbox row of the alert, with streaming on and off (median of runs).
   Without ``--model`` the networks are untrained ResNet-50s at 224 with every threshold at 0, so the very
   first classified slice flags the study: this measures the machinery, the best case of streaming.
   With a trained model (e.g. the demo model) the flag waits for a slice with a real bleed.
2. Throughput: slices/s of the worker's classify path (decode thread pool overlapping batched inference)
   against the naive baseline (one slice at a time: read, preprocess, eager fp32 stage 1, stage 2 when
   positive; no overlap), same slices, same process; and the fraction of the CPU's dense fp32 rate
   measured in the same run (cpu_peak.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpu_peak import cpu_name, dense_gflops  # noqa: E402 - benchmarks/ is on sys.path

from tests.helpers import free_port, wait_for, wait_for_port  # noqa: E402
from triage.config import load_settings  # noqa: E402
from triage.daemon import Daemon, initialise  # noqa: E402
from triage.db.engine import transaction  # noqa: E402
from triage.db.models import Alert, Series, SeriesResult, Study, Threshold  # noqa: E402
from triage.imaging import preprocess_file  # noqa: E402
from triage.model import Classifier, save_random_model  # noqa: E402
from triage.synth.study import make_study  # noqa: E402
from triage.worker.pipeline import Pipeline, SliceRef  # noqa: E402

GFLOP_PER_SLICE = {"resnet50": 8.2, "resnet18": 3.6, "resnet34": 7.3, "resnet101": 15.6}  # at 224


def _write_study(folder: Path, seed: int, slices: int) -> str:
    study = make_study(seed, slices=slices, subtypes=("subdural", "intraparenchymal"))
    folder.mkdir(parents=True)
    for i, ds in enumerate(study.datasets):
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)
    return str(study.datasets[0].StudyInstanceUID)


def _alert_delay(factory, study_uid: str) -> tuple[float, float, dict[str, float]] | None:
    with factory() as s:
        study = s.scalar(select(Study).where(Study.study_uid == study_uid))
        if study is None:
            return None
        alert = s.scalar(select(Alert).where(Alert.study_id == study.id).order_by(Alert.created_at))
        series = s.scalar(select(Series).where(Series.study_id == study.id))
        final = s.scalar(select(SeriesResult).join(Series).where(Series.study_id == study.id,
                                                                  SeriesResult.provisional.is_(False)))
        if alert is None or series is None or final is None:
            return None
        return ((alert.created_at - series.last_received_at).total_seconds(),
                (series.classified_at - series.last_received_at).total_seconds(), final.timings)


def time_to_alert(model: Path, streaming: bool, runs: int, slices: int, backend: str, trained: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings(
            data_dir=root / "data",
            model=model,
            dicom={"port": free_port()},
            series={"quiet_seconds": 5},
            worker={"streaming": streaming, "backend": backend, "batch_size": 8, "device": "cpu",
                    "heatmaps": False, "poll_seconds": 1},
            alerts={"webhook": {"url": f"http://127.0.0.1:{free_port()}/unreachable"}},
        )
        settings.data_dir.mkdir(parents=True)
        initialise(settings)
        daemon = Daemon(settings, ("scp", "worker"))
        daemon.start()
        assert daemon.factory is not None
        if not trained:
            with transaction(daemon.factory) as s:
                for row in s.scalars(select(Threshold)):
                    row.threshold = 0.0
        wait_for_port(settings.dicom.port)
        alerts, finals, timings = [], [], []
        try:
            for run in range(runs + 1):  # the first run warms up
                folder = root / f"study{run}"
                uid = _write_study(folder, 1000 + run, slices)
                subprocess.run(
                    ["storescu", "-aec", "TRIAGE", "+sd", "127.0.0.1", str(settings.dicom.port), str(folder)],
                    env={**os.environ, "TCP_NODELAY": "1"}, check=True, capture_output=True,
                )
                delay = wait_for(lambda u=uid: _alert_delay(daemon.factory, u), timeout=300, interval=0.01)
                if run:
                    alerts.append(delay[0])
                    finals.append(delay[1])
                    timings.append(delay[2])
        finally:
            daemon.stop()
    label = "on " if streaming else "off"
    print(f"streaming {label}: time-to-alert median {statistics.median(alerts):6.2f} s "
          f"(min {min(alerts):.2f}, max {max(alerts):.2f}); final result median {statistics.median(finals):6.2f} s")
    keys = ("preprocess", "stage1", "stage2", "database")
    total = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in keys}
    print("   final pass (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in total.items())
          + f"  [slices classified in the final pass: {statistics.median(t.get('slices', 0) for t in timings):.0f}]")


def throughput(model: Path, files: list[Path], backend: str, threads: int) -> None:
    settings = load_settings(worker={"batch_size": 16, "decode_threads": 1, "backend": backend, "device": "cpu"})
    fast = Classifier(model, device="cpu", batch_size=16, threads=threads, backend=backend)
    naive = Classifier(model, device="cpu", batch_size=1, threads=threads, backend="torch")
    refs = [SliceRef(i, str(i), f, None, i) for i, f in enumerate(files)]

    started = time.perf_counter()
    for f in files:
        x = preprocess_file(f, naive.image_size, naive.windowing)[None]
        p = naive.detect(x)
        if p[0] >= naive.detection_threshold:
            naive.subtype(x)
    naive_rate = len(files) / (time.perf_counter() - started)

    pipeline = Pipeline(settings, None, fast)  # type: ignore[arg-type]  # classify() needs no database
    pipeline.classify(refs[:16])  # warm-up (ONNX Runtime arenas, thread pools)
    started = time.perf_counter()
    batch = pipeline.classify(refs)
    fast_rate = len(files) / (time.perf_counter() - started)
    pipeline.close()
    positives = int(np.sum(np.array([p[0] for p in batch.predictions.values()]) >= fast.detection_threshold))
    pool = fast.metadata.input_pool  # the network sees image_size / input_pool pixels
    gflop = GFLOP_PER_SLICE.get(fast.backbone, 8.2) * (fast.image_size / pool / 224) ** 2
    print(f"throughput ({fast.backbone} @ {fast.image_size}, {len(files)} slices, {positives} through stage 2):")
    print(f"   naive baseline (1 slice at a time, eager fp32, no overlap): {naive_rate:6.1f} slices/s")
    print(f"   worker ({backend}, batch 16, decode overlapped):            {fast_rate:6.1f} slices/s  "
          f"= {fast_rate / naive_rate:.2f}x the baseline")
    stage1_share = batch.timings.stage1 / max(1e-9, batch.timings.stage1 + batch.timings.stage2)
    peak = dense_gflops(threads or 2)
    flops = fast_rate * gflop * (1 + (positives / len(files))) / peak
    print(f"   stage 1 share of model time {stage1_share:.0%}; model FLOPs at {flops:.0%} of the best dense fp32 "
          f"rate measured now ({peak:.0f} GFLOP/s; both stages counted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="trained model directory (default: untrained resnet50 @ 224)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-alert", action="store_true", help="only the throughput part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or save_random_model(Path(tmp) / "model", backbone="resnet50", image_size=224)
        print(f"{dt.datetime.now():%Y-%m-%d %H:%M} model {model.name}, backend {args.backend}, "
              f"{cpu_name()}, {os.cpu_count()} CPUs")
        if not args.skip_alert:
            for streaming in (False, True):
                time_to_alert(model, streaming, args.runs, args.slices, args.backend, args.model is not None)
        folder = Path(tmp) / "slices"
        _write_study(folder, 77, 64)
        throughput(model, sorted(folder.glob("*.dcm")), args.backend, args.threads)


if __name__ == "__main__":
    main()
