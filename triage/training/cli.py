"""Arguments and entry points of `triage train` and `triage evaluate` (filled in by the model issue)."""

from __future__ import annotations

import argparse

from triage.errors import UsageError


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="directory of ID_<sop>.dcm files")
    p.add_argument("--labels", required=True, metavar="CSV", help="stage_2_train.csv")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--labels", required=True, metavar="CSV")
    p.add_argument("--out", metavar="DIR")


def train_command(args: argparse.Namespace) -> int:
    raise UsageError("triage train is not built yet")


def evaluate_command(args: argparse.Namespace) -> int:
    raise UsageError("triage evaluate is not built yet")
