"""DICOM ingest throughput: DCMTK storescp (writing files) against triage's durable receiver, interleaved.

A 200-slice 512x512 CT series is sent with DCMTK ``storescu`` (TCP_NODELAY=1, as both DCMTK tools need) on
loopback, once with one association and once with 4 parallel associations (4 storescu processes, 50 slices
each), to:

  storescp       DCMTK storescp 3.6 writing files (``--fork`` for parallel associations): the baseline
  triage scp     ``triage scp`` as a user runs it: fsync of file and directory + one committed database row
                 per slice before the success status (SQLite WAL, synchronous=FULL, or --database-url)

and, with ``--variants``, the receive-path ideas of the ingest issue, each in a receiver process built from
``triage.dicom.server.DicomServer`` with one switch changed from the defaults:

  no-nodelay     Nagle's algorithm left on for accepted sockets
  pdu-16k        maximum PDU 16382 advertised instead of 0 (unlimited)
  no-group       every slice in its own database transaction (no group commit across associations)
  chunked        pynetdicom's STORE_RECV_CHUNKED_DATASET (the data set streamed to a temporary file)
  bare           pynetdicom's ceiling: the same AE with a handler that keeps nothing (not durable)

Every receiver starts fresh (empty store and database) for each run; runs are interleaved round by round, and
the figures are medians over the rounds, in slices/s, with the ratio to storescp of the same round.
Each triage run is checked: 200 rows and 200 files, or the benchmark stops.

Usage (from the repository root): .venv/bin/python benchmarks/ingest.py [--rounds 3] [--slices 200]
                                  [--variants [all|name,name...]]
                                  [--database-url postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
VARIANTS = {
    "default": {},
    "no-nodelay": {"tcp_nodelay": False},
    "pdu-16k": {"max_pdu_size": 16382},
    "no-group": {"group_commit": False},
    "chunked": {"chunked": True},
    "bare": {"bare": True},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def write_series(directory: Path, slices: int) -> list[Path]:
    """``slices`` 512x512 int16 CT slices (about 525 KB each) of one series."""
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    directory.mkdir(parents=True)
    paths = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientID, ds.PatientName, ds.StudyDate = "CT", "BENCH", "Bench^Mark", "20240101"
        ds.BodyPartExamined, ds.SeriesDescription, ds.ImageType = "HEAD", "AXIAL", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber, ds.SliceThickness = k + 1, 5.0
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 5.0 * k], [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (512, 512), dtype=np.int16).tobytes()
        paths.append(directory / f"{k:04d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def split(paths: list[Path], parts: int, directory: Path) -> list[Path]:
    """Hard links of ``paths`` in ``parts`` directories (round robin)."""
    dirs = [directory / f"part{n}" for n in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    for k, path in enumerate(paths):
        os.link(path, dirs[k % parts] / path.name)
    return dirs


def send(port: int, aet: str, directories: list[Path]) -> float:
    """Seconds for parallel storescu processes to send every file of ``directories``."""
    started = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aec", aet, "+sd", "127.0.0.1", str(port), str(d)], env=DCMTK_ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for d in directories]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {err[-2000:]}")
    return elapsed


@contextlib.contextmanager
def storescp(workdir: Path, fork: bool) -> Iterator[tuple[int, str]]:
    port = free_port()
    out = workdir / f"storescp-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    args = ["storescp", "-aet", "STORESCP", "-od", str(out), *(["--fork"] if fork else []), str(port)]
    proc = subprocess.Popen(args, env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, "STORESCP"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if fork:
            subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
        shutil.rmtree(out, ignore_errors=True)


class Database:
    """A fresh migrated database per run: an SQLite file, or a new database on the PostgreSQL server."""

    def __init__(self, workdir: Path, admin_url: str | None) -> None:
        self.workdir = workdir
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT") if admin_url else None
        self.admin_url = admin_url

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        from triage.db import migrate

        if self.admin is None:
            path = self.workdir / f"triage-{uuid.uuid4().hex[:8]}.db"
            url = f"sqlite:///{path}"
            migrate.upgrade(url)
            try:
                yield url
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        name = f"triage_bench_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        try:
            yield url
        finally:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def triage_receiver(workdir: Path, url: str, variant: str | None) -> Iterator[tuple[int, str]]:
    """``triage scp`` (variant None) or a DicomServer with one switch changed, on a free port."""
    port = free_port()
    data = workdir / f"data-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(TRIAGE_DATABASE_URL=url, TRIAGE_DATA_DIR=str(data), TRIAGE_LOG_LEVEL="WARNING")
    if variant is None:
        args = [PYTHON, "-m", "triage", "scp", "--dicom-port", str(port)]
    else:
        args = [PYTHON, str(Path(__file__).resolve()), "_serve", variant, str(port)]
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, timeout=120)
        yield port, "TRIAGE"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        if "Traceback" in err:
            raise RuntimeError(f"receiver failed:\n{err[-3000:]}")
        shutil.rmtree(data, ignore_errors=True)


def check(url: str, slices: int) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM instances")).scalar_one()
    finally:
        engine.dispose()
    if count != slices:
        raise RuntimeError(f"{count} instance rows after sending {slices} slices")


def serve(variant: str, port: int) -> None:
    """The ``_serve`` helper: a DicomServer with the variant's switch, until SIGTERM."""
    import signal

    from pynetdicom import _config

    from triage.config import load_settings
    from triage.db.engine import create_db_engine, session_factory
    from triage.dicom.server import DicomServer, Tuning

    change = dict(VARIANTS[variant])
    if change.pop("bare", False):
        return serve_bare(port)
    if change.pop("chunked", False):
        _config.STORE_RECV_CHUNKED_DATASET = True
    dicom = {"port": port, **({"max_pdu_size": change.pop("max_pdu_size")} if "max_pdu_size" in change else {})}
    settings = load_settings(dicom=dicom)
    settings.store.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database_url)
    server = DicomServer(settings, session_factory(engine), Tuning(**change))
    server.start()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.2)
    server.stop()
    engine.dispose()


def serve_bare(port: int) -> None:
    """pynetdicom's ceiling on this machine: the same AE, a handler that keeps nothing and answers success."""
    import signal

    from pynetdicom import evt

    from triage.config import DicomSettings
    from triage.dicom.server import build_ae

    ae = build_ae(DicomSettings(port=port))
    handlers = [(evt.EVT_C_STORE, lambda event: (event.encoded_dataset(), 0)[1])]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.2)
    server.shutdown()


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        paths = write_series(workdir / "series", args.slices)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        one, four = [workdir / "series"], split(paths, 4, workdir / "split")
        db = Database(workdir, args.database_url)
        chosen = [v for v in VARIANTS if v != "default"] if args.variants == "all" else (
            args.variants.split(",") if args.variants else [])
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}: expected some of {list(VARIANTS)}")
        receivers = ["triage scp"] + [f"variant {v}" for v in chosen]
        results: dict[tuple[str, int], list[float]] = {}
        ratios: dict[tuple[str, int], list[float]] = {}
        print(f"{args.slices} slices of {size:.0f} KB, {args.rounds} rounds, database "
              f"{'PostgreSQL' if args.database_url else 'SQLite'}, load {os.getloadavg()[0]:.2f}", flush=True)
        for round_ in range(args.rounds):
            for dirs in (one, four):
                with storescp(workdir, fork=len(dirs) > 1) as (port, aet):
                    base = args.slices / send(port, aet, dirs)
                results.setdefault(("storescp", len(dirs)), []).append(base)
                for name in receivers:
                    variant = None if name == "triage scp" else name.split()[1]
                    with db.fresh() as url:
                        with triage_receiver(workdir, url, variant) as (port, aet):
                            rate = args.slices / send(port, aet, dirs)
                        if variant != "bare":
                            check(url, args.slices)
                    results.setdefault((name, len(dirs)), []).append(rate)
                    ratios.setdefault((name, len(dirs)), []).append(rate / base)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        report(results, ratios, receivers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: dict[tuple[str, int], list[float]], ratios: dict[tuple[str, int], list[float]],
           receivers: list[str]) -> None:
    print(f"{'receiver':<22}{'assoc':>6}{'slices/s (median)':>20}{'ratio to storescp':>20}")
    for associations in (1, 4):
        base = statistics.median(results[("storescp", associations)])
        print(f"{'storescp':<22}{associations:>6}{base:>20.0f}{1.0:>20.2f}")
        for name in receivers:
            rate = statistics.median(results[(name, associations)])
            ratio = statistics.median(ratios[(name, associations)])
            print(f"{name:<22}{associations:>6}{rate:>20.0f}{ratio:>20.2f}")
    for name in receivers:
        one, four = statistics.median(results[(name, 1)]), statistics.median(results[(name, 4)])
        print(f"{name}: 4 associations / 1 association = {four / one:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        sys.path.insert(0, str(REPO))
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--variants", nargs="?", const="all", help="also measure the receive-path ideas (all, or "
                        "a comma-separated list)")
    parser.add_argument("--database-url", help="PostgreSQL server admin URL (a fresh database per run)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
