"""`triage demo`: the whole system on one machine with embedded defaults.

It migrates a SQLite database under the demo data directory, trains a small model on phantoms the
first time (a few minutes on a laptop CPU; kept for later runs), creates a demo admin, starts every
role, makes phantom head-CT studies and sends them over DICOM to itself, then shows where to look.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from sqlalchemy import func, select

from triage.config import Settings, prepare_directories
from triage.daemon import Daemon, initialise, open_database
from triage.db.models import Series, User
from triage.domain import SeriesState
from triage.errors import ConfigError

LOGGER = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_SEED = 2026
FINAL_STATES = (SeriesState.CLASSIFIED.value, SeriesState.FAILED.value, SeriesState.NOT_ANALYSED.value)


def demo_settings(settings: Settings) -> Settings:
    """The demo's defaults on top of the given settings: a secret key and a model in the data dir.

    A model the user names must exist (a typo must not become a freshly trained demo model).
    """
    updates: dict[str, object] = {"demo": True}
    if not settings.web.secret_key:
        updates["web"] = settings.web.model_copy(update={"secret_key": secrets.token_urlsafe(32)})
    if settings.model is None:
        updates["model"] = settings.data_dir / "model"
    elif not (settings.model / "model.json").is_file():
        raise ConfigError("model", str(settings.model), "no model.json there (leave --model out to train a demo model)")
    return settings.model_copy(update=updates)


def model_thresholds(settings: Settings) -> Settings:
    """The model's calibrated thresholds as the initial ones, for every class the user did not set."""
    from triage.model import read_metadata

    assert settings.model is not None  # noqa: S101 - demo_settings fills it in
    calibrated = read_metadata(settings.model).thresholds
    given = settings.thresholds.model_fields_set
    update = {name: float(value) for name, value in calibrated.items() if name not in given}
    return settings.model_copy(update={"thresholds": settings.thresholds.model_copy(update=update)})


def ensure_model(settings: Settings) -> Path:
    """The configured model, or the demo model trained on phantoms the first time (minutes, on a CPU)."""
    assert settings.model is not None  # noqa: S101 - demo_settings fills it in
    if (settings.model / "model.json").exists():
        return settings.model
    from triage.training import train_demo_model

    LOGGER.info("no model yet: training a small demo model on phantoms (a few minutes, done once)")
    return train_demo_model(settings.model, work_dir=settings.data_dir / "demo-training")


def ensure_user(settings: Settings) -> str | None:
    """Create the demo admin with a fresh password unless it exists; returns the password when created."""
    from triage.web.users import add_user

    engine, factory = open_database(settings)
    try:
        with factory() as session:
            if session.scalar(select(User).where(User.username == DEMO_USER)) is not None:
                return None
        password = secrets.token_urlsafe(9)
        add_user(factory, DEMO_USER, "admin", password)
        (settings.data_dir / "demo-password.txt").write_text(password + "\n", encoding="utf-8")
        return password
    finally:
        engine.dispose()


def make_studies(settings: Settings, studies: int) -> Path:
    """Phantom studies for the demo (made once; the same seed gives the same studies)."""
    from triage.synth import write_dataset

    out = settings.data_dir / "phantoms"
    if not out.exists() or not any(out.rglob("*.dcm")):
        LOGGER.info("making %d phantom head-CT studies in %s", studies, out)
        write_dataset(out, studies=studies, seed=DEMO_SEED, slices=32, positive_fraction=0.5, kaggle=False)
    return out


def send_studies(settings: Settings, folder: Path) -> bool:
    """Send every phantom to our own DICOM port, as a scanner would."""
    from triage.dicom.scu import send_paths

    report = send_paths(
        [folder], host="127.0.0.1", port=settings.dicom.port, called_aet=settings.dicom.ae_title,
        calling_aet="DEMOSCANNER", progress=False,
    )
    LOGGER.info("demo scanner: %s", report.summary())
    return report.ok


def pending_series(daemon: Daemon) -> int:
    """Series not yet in a final state."""
    assert daemon.factory is not None  # noqa: S101
    with daemon.factory() as session:
        return int(session.scalar(select(func.count()).where(Series.state.not_in(FINAL_STATES))) or 0)


def run_demo(settings: Settings, *, studies: int, keep_running: bool, announce: Callable[[str], None]) -> int:
    """Run the demo; with ``keep_running`` False, stop once every study is classified.

    ``announce`` shows the user where to look and how to log in (the CLI prints it to standard output;
    the password is a secret and never goes to the log).
    """
    settings = demo_settings(settings)
    prepare_directories(settings)
    settings = model_thresholds(settings.model_copy(update={"model": ensure_model(settings)}))
    initialise(settings)  # seeds the thresholds of a new database
    password = ensure_user(settings)
    folder = make_studies(settings, studies)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    daemon = Daemon(settings, ("scp", "worker", "web"))
    try:
        daemon.start()
        url = f"http://{settings.web.host}:{settings.web.port}/"
        login = f"user {DEMO_USER!r}, password {password!r}" if password else (
            f"user {DEMO_USER!r}, password in {settings.data_dir / 'demo-password.txt'}"
        )
        announce(f"triage demo: worklist at {url} ({login})")
        started = time.monotonic()
        ok = send_studies(settings, folder)
        while not stop.wait(0.5) and pending_series(daemon):
            pass
        LOGGER.info("all studies classified %.1f s after the first was sent", time.monotonic() - started)
        if keep_running:
            announce(f"triage demo: open {url} and log in ({login}); Ctrl-C stops the demo")
            while not stop.wait(1.0):
                pass
        return 0 if ok else 1
    finally:
        daemon.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
