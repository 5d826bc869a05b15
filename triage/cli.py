"""The ``triage`` command. Thin: parses arguments, builds settings, calls the daemon or a tool."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from triage import __version__
from triage.config import EXAMPLE_CONFIG, Settings, load_settings, prepare_directories
from triage.errors import ConfigError, TriageError, UsageError

LOGGER = logging.getLogger(__name__)

ROLES = ("scp", "worker", "web")
QUIET_LOGGERS = (
    "alembic.runtime.plugins", "apscheduler", "pynetdicom", "uvicorn.access", "urllib3", "httpx", "matplotlib", "PIL",
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the file, the environment and the shared flags of ``args``."""
    dicom = {"ae_title": getattr(args, "ae_title", None), "port": getattr(args, "dicom_port", None)}
    web = {"host": getattr(args, "web_host", None), "port": getattr(args, "web_port", None)}
    overrides: dict[str, Any] = {
        "database_url": getattr(args, "database_url", None),
        "storage_dir": getattr(args, "storage_dir", None),
        "data_dir": getattr(args, "data_dir", None),
        "model": getattr(args, "model", None),
        "log_level": getattr(args, "log_level", None),
        "dicom": {k: v for k, v in dicom.items() if v is not None} or None,
        "web": {k: v for k, v in web.items() if v is not None} or None,
        **extra,
    }
    return load_settings(getattr(args, "config", None), **overrides)


# -- commands ---------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from triage.daemon import initialise

    config = Path(args.config or os.environ.get("TRIAGE_CONFIG") or "triage.toml")
    if not config.exists():
        try:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(EXAMPLE_CONFIG, encoding="utf-8")
        except OSError as exc:
            reason = f"cannot write the example configuration ({exc.strerror})"
            raise ConfigError("config", str(config), reason) from exc
        LOGGER.info("wrote an example configuration to %s", config)
    args.config = str(config)  # and use it
    settings = _settings(args)
    prepare_directories(settings)
    initialise(settings)
    LOGGER.info("database at %s is migrated to the newest schema", _safe_url(settings.database_url))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from triage.db import migrate

    settings = _settings(args)
    prepare_directories(settings)
    if args.db_command == "upgrade":
        migrate.upgrade(settings.database_url, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(settings.database_url, args.revision)
    else:
        print(migrate.current(settings.database_url) or "(empty database)")  # noqa: T201
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from triage.daemon import run

    roles = tuple(args.roles)
    return run(_settings(args), roles)


def cmd_demo(args: argparse.Namespace) -> int:
    from triage.demo import run_demo

    settings = _settings(args, demo=True, data_dir=args.data_dir or Path("./triage-demo"))
    return run_demo(settings, studies=args.studies, keep_running=not args.exit_when_done, announce=_announce)


def _announce(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def cmd_synth(args: argparse.Namespace) -> int:
    from triage.synth import write_dataset

    summary = write_dataset(
        Path(args.out),
        studies=args.studies,
        seed=args.seed,
        slices=args.slices,
        positive_fraction=args.positive_fraction,
        kaggle=args.kaggle,
    )
    print(summary)  # noqa: T201
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from triage.dicom.scu import send_paths

    report = send_paths(
        [Path(p) for p in args.paths],
        host=args.host,
        port=args.port,
        called_aet=args.aec,
        calling_aet=args.aet,
        associations=args.associations,
        remap_uids=args.remap_uids,
        progress=not args.no_progress,
    )
    print(report.summary())  # noqa: T201
    return 0 if report.ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from triage.training.cli import train_command

    return train_command(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from triage.training.cli import evaluate_command

    return evaluate_command(args)


def cmd_user(args: argparse.Namespace) -> int:
    from triage.daemon import open_database
    from triage.web.users import add_user, issue_token

    settings = _settings(args)
    engine, factory = open_database(settings)
    try:
        if args.user_command == "add":
            password = _read_password(args.password_stdin)
            add_user(factory, args.name, args.role, password)
            LOGGER.info("user %s created with role %s", args.name, args.role)
        else:
            print(issue_token(factory, args.name))  # noqa: T201
    finally:
        engine.dispose()
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise UsageError("the passwords do not match")
    if len(password) < 8:
        raise UsageError("the password must have at least 8 characters")
    return password


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- parser -----------------------------------------------------------------------------------------


def _roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(f"unknown role(s) {','.join(unknown) or value!r}: expected {ROLES}")
    return roles


def _common(parser: argparse.ArgumentParser, *, daemon: bool = False) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML configuration file (or TRIAGE_CONFIG)")
    parser.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL (sqlite:/// or postgresql+psycopg://)")
    parser.add_argument("--storage-dir", metavar="DIR", help="DICOM store directory")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    if daemon:
        parser.add_argument("--ae-title", metavar="AET", help="our DICOM AE title (default TRIAGE)")
        parser.add_argument("--dicom-port", metavar="N", type=int, help="DICOM port (default 11112)")
        parser.add_argument("--web-host", metavar="H", help="web address to bind (default 127.0.0.1)")
        parser.add_argument("--web-port", metavar="N", type=int, help="web port (default 8080)")
        parser.add_argument("--model", metavar="MODEL_DIR", help="model directory for the worker")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every contract command (DESIGN.md section 3).

    The arguments of ``train`` and ``evaluate`` come from :mod:`triage.training`, which loads torch
    (seconds): they are only added when ``command`` is one of them (None: all of them), so the other
    commands start fast.
    """
    parser = argparse.ArgumentParser(
        prog="triage",
        description="Worklist triage of intracranial hemorrhage on head CT.",
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "write an example config (if absent) and migrate the database to head")
    _common(p)

    p = add("db", cmd_db, "database migrations (Alembic) on the configured database")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for action, help_ in (("upgrade", "migrate up (default: head)"), ("downgrade", "migrate down to REV")):
        q = db_sub.add_parser(action, help=help_)
        q.add_argument("revision", nargs="?" if action == "upgrade" else None, default="head", metavar="REV")
        _common(q)
    _common(db_sub.add_parser("current", help="print the current revision"))

    p = add("serve", cmd_serve, "run the chosen roles in one process (default: scp,worker,web)")
    p.add_argument("--roles", type=_roles, default=list(ROLES), help="comma-separated roles: scp,worker,web")
    _common(p, daemon=True)
    for role, help_ in (
        ("scp", "run the DICOM receiver only"),
        ("worker", "run the classification worker and alert dispatcher only"),
        ("web", "run the web application only"),
    ):
        p = add(role, cmd_serve, help_)
        p.set_defaults(roles=[role])
        _common(p, daemon=True)

    p = add("demo", cmd_demo, "the whole system on embedded defaults, end to end, on one machine")
    _common(p, daemon=True)
    p.add_argument("--data-dir", metavar="DIR", help="where the demo keeps its data (default ./triage-demo)")
    p.add_argument("--studies", type=int, default=8, metavar="N", help="phantom studies to send (default 8)")
    p.add_argument("--exit-when-done", action="store_true", help="stop once every study is classified")

    p = add("synth", cmd_synth, "write synthetic head-CT phantom studies as DICOM files (+ labels)")
    p.add_argument("out", metavar="OUT", help="output directory")
    p.add_argument("--studies", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--slices", type=int, default=32, metavar="K")
    p.add_argument("--positive-fraction", type=float, default=0.5, metavar="F")
    p.add_argument("--kaggle", action="store_true", help="write the RSNA Kaggle layout (ID_<sop>.dcm + CSV)")

    p = add("send", cmd_send, "C-STORE every DICOM file under PATH to a receiver")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11112)
    p.add_argument("--aec", default="TRIAGE", metavar="AET", help="called AE title (default TRIAGE)")
    p.add_argument("--aet", default="TRIAGESCU", metavar="AET", help="our calling AE title")
    p.add_argument("--associations", type=int, default=1, metavar="N", help="parallel associations")
    p.add_argument("--remap-uids", action="store_true", help="replace invalid UIDs with valid 2.25 UIDs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add("train", cmd_train, "train both stages on RSNA-layout data; writes a model directory")
    if command in (None, "train"):
        _add_training_arguments(p)

    p = add("evaluate", cmd_evaluate, "per-class precision/recall/F1, AUC, weighted log loss, plots")
    if command in (None, "evaluate"):
        _add_evaluation_arguments(p)

    p = add("user", cmd_user, "web users and API tokens")
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    q = user_sub.add_parser("add", help="create a web user")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--role", choices=("admin", "radiologist"), required=True)
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _common(q)
    q = user_sub.add_parser("token", help="print a new API token for the user (stored hashed)")
    q.add_argument("name", metavar="NAME")
    _common(q)
    return parser


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    from triage.training.cli import add_train_arguments

    add_train_arguments(p)


def _add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    from triage.training.cli import add_evaluate_arguments

    add_evaluate_arguments(p)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 usage/configuration, 1 runtime failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(command)
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        print(f"triage: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except TriageError as exc:
        print(f"triage: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
