"""Alert path figures: outbox cost in the worker's transaction, dispatch latency, channel isolation, SR export.

Measured in one run on a fresh SQLite database (or --database-url) with real receivers on loopback:
  enqueue        ms added to the worker's result transaction by enqueue_alerts (3 channels configured),
                 against the same transaction without it (baseline)
  latency        commit of a flagged result -> webhook received, through AlertService's scheduler jobs,
                 for dispatch_seconds 1.0 (default) and 0.25
  isolation      time until N e-mails are delivered while the webhook receiver hangs (timeout 2 s):
                 channels in parallel (dispatch_due) against one channel after the other (baseline)
  report         ms per DICOM report (Enhanced SR + key objects from 32 stored slices, C-STORE to storescp)

Usage (from the repository root): .venv/bin/python benchmarks/alerts.py [--studies 40] [--database-url URL]
The helpers come from tests/alerts (test data and receivers), so run it from a checkout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from tests.alerts.conftest import add_case, set_result, use_dicom, use_mail, use_webhook  # noqa: E402
from tests.alerts.receivers import MailSink, Storescp, WebhookReceiver, start_smtp  # noqa: E402
from triage.alerts.dispatcher import AlertService, dispatch_channel, dispatch_due  # noqa: E402
from triage.config import load_settings  # noqa: E402
from triage.daemon import build_scheduler  # noqa: E402
from triage.db import migrate  # noqa: E402
from triage.db.engine import create_db_engine, session_factory  # noqa: E402
from triage.db.models import Alert  # noqa: E402


def _settings(workdir: Path, url: str | None):
    url = url or f"sqlite:///{workdir / 'bench.db'}"
    migrate.upgrade(url)
    settings = load_settings(data_dir=workdir / "data", database_url=url)
    settings.store.mkdir(parents=True, exist_ok=True)
    return settings


def bench_enqueue(settings, factory, studies: int) -> None:
    settings.alerts.webhook.url = "http://127.0.0.1:9/hook"
    settings.alerts.smtp.host, settings.alerts.smtp.sender = "127.0.0.1", "t@example.org"
    settings.alerts.smtp.recipients = ["r@example.org"]
    settings.alerts.dicom.ae_title, settings.alerts.dicom.host = "PACS", "127.0.0.1"
    cases = [add_case(factory, settings, flagged=(), slices=1, enqueue=False) for _ in range(studies)]
    with_alerts, without = [], []
    for index, case in enumerate(cases):  # interleaved: same conditions for both
        started = time.perf_counter()
        set_result(factory, settings, case, flagged=("any", "subdural"), enqueue=index % 2 == 0,
                   model_version=f"m{index}")
        (with_alerts if index % 2 == 0 else without).append((time.perf_counter() - started) * 1000)
    a, b = statistics.median(with_alerts), statistics.median(without)
    print(f"enqueue: result transaction {a:.2f} ms with outbox rows, {b:.2f} ms without "
          f"(+{a - b:.2f} ms, ratio {a / b:.2f}x), {len(cases)} studies")


def bench_latency(settings, factory, studies: int) -> None:
    for every in (1.0, 0.25):
        receiver = WebhookReceiver().start()
        use_webhook(settings, receiver)
        settings.alerts.smtp.host = settings.alerts.dicom.host = ""
        settings.alerts.dispatch_seconds = every
        scheduler = build_scheduler()
        service = AlertService(settings, factory, scheduler)
        service.start()
        scheduler.start()
        delays = []
        try:
            for _ in range(studies):
                count = len(receiver.requests)
                started = time.perf_counter()
                add_case(factory, settings, flagged=("any",), slices=1)
                while len(receiver.requests) == count:
                    time.sleep(0.005)
                delays.append(time.perf_counter() - started)
                time.sleep(every * 0.37)  # desynchronise from the polling phase
        finally:
            service.stop()
            scheduler.shutdown(wait=True)
            receiver.stop()
        print(f"latency: dispatch_seconds={every}: commit -> webhook received median {statistics.median(delays):.3f} s,"
              f" max {max(delays):.3f} s ({studies} alerts)")


def bench_isolation(settings, factory, studies: int) -> None:
    results = {}
    for mode in ("serial", "parallel"):
        receiver = WebhookReceiver().start()
        receiver.hold.set()
        use_webhook(settings, receiver)
        settings.alerts.webhook.timeout_seconds = 2.0
        sink = MailSink()
        controller = start_smtp(sink)
        sink.port = controller.port
        use_mail(settings, sink)
        settings.alerts.dicom.host = ""
        with factory() as session:
            for row in session.scalars(select(Alert).where(Alert.state == "pending")):
                row.state = "cancelled"
            session.commit()
        for _ in range(studies):
            add_case(factory, settings, flagged=("any",), slices=1)
        started = time.perf_counter()
        done = threading.Event()

        def watch(sink=sink, started=started, done=done, mode=mode) -> None:
            while len(sink.messages) < studies:
                time.sleep(0.005)
            results[mode] = time.perf_counter() - started
            done.set()

        threading.Thread(target=watch, daemon=True).start()
        if mode == "serial":
            for channel in ("webhook", "email"):
                dispatch_channel(factory, settings, channel, budget_seconds=8.0)
        else:
            dispatch_due(factory, settings, channels=("webhook", "email"))
        done.wait(120)
        receiver.release.set()
        receiver.stop()
        controller.stop()
    print(f"isolation: {studies} e-mails delivered while the webhook hangs: parallel {results['parallel']:.2f} s, "
          f"serial baseline {results['serial']:.2f} s (ratio {results['serial'] / results['parallel']:.1f}x)")


def bench_report(settings, factory, workdir: Path, reports: int) -> None:
    server = Storescp(workdir / "storescp" / "in")
    try:
        use_dicom(settings, server.ae_title, server.port)
        settings.alerts.webhook.url = settings.alerts.smtp.host = ""
        cases = [add_case(factory, settings, flagged=("any", "subdural"), slices=32) for _ in range(reports)]
        started = time.perf_counter()
        sent = dispatch_due(factory, settings, channels=("dicom",))
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    print(f"report: {elapsed / max(sent, 1) * 1000:.0f} ms per report (SR + key objects, 32-slice series, "
          f"{sent}/{len(cases)} stored by storescp)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        settings = _settings(workdir, args.database_url)
        engine = create_db_engine(settings.database_url)
        factory = session_factory(engine)
        try:
            bench_enqueue(settings, factory, args.studies)
            bench_latency(settings, factory, max(5, args.studies // 4))
            bench_isolation(settings, factory, max(5, args.studies // 4))
            bench_report(settings, factory, workdir, 5)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
