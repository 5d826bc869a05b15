"""``triage send``: a C-STORE SCU that sends every DICOM file under some paths, with a progress bar.

Files are recognised by their DICOM preamble (``DICM``); the presentation contexts are built from
their file meta (each file is sent in its own transfer syntax, uncompressed ones may be converted);
``associations`` threads share the files. Every failure is reported per file with its status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS
from tqdm import tqdm

from triage.dicom.remap import remap_uids
from triage.dicom.requestor import request_association
from triage.errors import UsageError

LOGGER = logging.getLogger(__name__)

MAX_CONTEXTS = 128
WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})
UNCOMPRESSED = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))


@dataclass(frozen=True)
class FileFailure:
    """A file that was not stored: its status (None when none came back) and why."""

    path: Path
    status: int | None
    reason: str

    def __str__(self) -> str:
        code = "" if self.status is None else f"0x{self.status:04X} "
        return f"{self.path}: {code}{self.reason}"


@dataclass
class SendReport:
    """The outcome of :func:`send_paths`."""

    destination: str
    total: int = 0
    stored: int = 0
    warnings: int = 0
    skipped: list[Path] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every DICOM file was stored (warnings included)."""
        return not self.failures and self.stored == self.total

    def summary(self, max_failures: int = 50) -> str:
        """A few lines for the user: counts, rate, then each failure with its status."""
        rate = self.stored / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"sent {self.stored} of {self.total} DICOM files to {self.destination} in {self.seconds:.1f} s "
            f"({rate:.0f} files/s); {len(self.failures)} failed, {self.warnings} with warnings, "
            f"{len(self.skipped)} non-DICOM files skipped"
        ]
        lines += [f"FAILED {failure}" for failure in self.failures[:max_failures]]
        if len(self.failures) > max_failures:
            lines.append(f"... and {len(self.failures) - max_failures} more failures")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Item:
    path: Path
    sop_class: str
    syntax: str


def send_paths(
    paths: Sequence[Path],
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    associations: int = 1,
    remap_uids: bool = False,
    progress: bool = True,
) -> SendReport:
    """C-STORE every DICOM file under ``paths`` to ``called_aet`` at ``host:port``.

    Parameters
    ----------
    paths
        Files and directories (searched recursively); a named path must exist.
    host, port, called_aet
        The receiver.
    calling_aet
        Our AE title.
    associations
        Parallel associations sharing the files.
    remap_uids
        Replace invalid UIDs with deterministic ``2.25.`` UIDs and fill a missing SOP Class UID from
        the file meta (research datasets).
    progress
        Show a tqdm progress bar on standard error.

    Returns
    -------
    SendReport
        Counts and per-file failures; ``ok`` is False when any file was not stored.

    Raises
    ------
    UsageError
        When a path does not exist or ``associations`` is below 1.
    """
    if associations < 1:
        raise UsageError(f"--associations {associations} is invalid: expected 1 or more")
    report = SendReport(destination=f"{called_aet}@{host}:{port}")
    items = list(_scan(_files(paths), report))
    report.total += len(items)
    started = time.monotonic()
    for group in _context_groups(items):
        _send_group(group, report, host, port, called_aet, calling_aet, associations, remap_uids, progress)
    report.seconds = time.monotonic() - started
    return report


def _files(paths: Sequence[Path]) -> Iterator[tuple[Path, bool]]:
    """Every file under ``paths``, sorted per directory, and whether the user named it directly."""
    for path in paths:
        if path.is_file():
            yield path, True
        elif path.is_dir():
            yield from ((p, False) for p in sorted(path.rglob("*")) if p.is_file())
        else:
            raise UsageError(f"path {str(path)!r} does not exist")


def _scan(files: Iterable[tuple[Path, bool]], report: SendReport) -> Iterator[_Item]:
    """The DICOM files with their SOP class and transfer syntax (from the file meta)."""
    for path, named in files:
        if not _is_dicom(path):
            if named:
                report.failures.append(FileFailure(path, None, "not a DICOM file (no DICM preamble)"))
                report.total += 1
            else:
                report.skipped.append(path)
            continue
        try:
            meta = read_file_meta_info(path)
            yield _Item(path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except Exception as exc:
            report.failures.append(FileFailure(path, None, f"unreadable file meta ({type(exc).__name__})"))
            report.total += 1


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _context_key(item: _Item) -> tuple[str, str]:
    return item.sop_class, "uncompressed" if item.syntax in UNCOMPRESSED else item.syntax


def _context_groups(items: list[_Item]) -> list[list[_Item]]:
    """The files split so that each group needs at most 128 presentation contexts."""
    keys = sorted({_context_key(item) for item in items})
    chunk_of = {key: n // MAX_CONTEXTS for n, key in enumerate(keys)}
    groups: list[list[_Item]] = [[] for _ in range((len(keys) + MAX_CONTEXTS - 1) // MAX_CONTEXTS)]
    for item in items:
        groups[chunk_of[_context_key(item)]].append(item)
    return groups


def _contexts(items: list[_Item]) -> list[PresentationContext]:
    contexts = []
    for sop_class, syntax in sorted({_context_key(item) for item in items}):
        syntaxes = list(UNCOMPRESSED) if syntax == "uncompressed" else [syntax]
        contexts.append(build_context(sop_class, syntaxes))
    return contexts


def _send_group(
    items: list[_Item], report: SendReport, host: str, port: int, called_aet: str, calling_aet: str,
    associations: int, remap: bool, progress: bool,
) -> None:
    queue = iter(items)
    lock = threading.Lock()
    bar = tqdm(total=len(items), unit="file", disable=not progress, desc="send", leave=False)
    sender = _Sender(report, queue, lock, bar, remap)
    ae = AE(ae_title=calling_aet)
    ae.requested_contexts = _contexts(items)
    threads = [
        threading.Thread(target=sender.run, args=(ae, host, port, called_aet), name=f"send-{n}")
        for n in range(min(associations, max(1, len(items))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bar.close()
    for item in queue:  # left over when every association failed
        report.failures.append(FileFailure(item.path, None, f"not sent: {sender.association_error}"))


class _Sender:
    """One association's loop: take the next file, send it, record the outcome."""

    def __init__(self, report: SendReport, queue: Iterator[_Item], lock: threading.Lock, bar: tqdm,
                 remap: bool) -> None:
        self.report = report
        self.queue = queue
        self.lock = lock
        self.bar = bar
        self.remap = remap
        self.association_error = "no association could be established"

    def run(self, ae: AE, host: str, port: int, called_aet: str) -> None:
        assoc, failure = request_association(ae, host, port, called_aet)
        if failure is not None:
            with self.lock:
                self.association_error = f"association with {called_aet}@{host}:{port} {failure}"
            LOGGER.error("%s", self.association_error)
            return
        try:
            while assoc.is_established and (item := self._next()) is not None:
                self._record(item, *self._send(assoc, item))
        finally:
            if assoc.is_established:
                assoc.release()
            else:
                with self.lock:
                    self.association_error = "the association was aborted"


    def _next(self) -> _Item | None:
        with self.lock:
            return next(self.queue, None)

    def _send(self, assoc: Association, item: _Item) -> tuple[int | None, str]:
        try:
            ds = dcmread(item.path)
            if self.remap:
                remap_uids(ds)
        except Exception as exc:
            return None, f"unreadable ({type(exc).__name__}: {exc})"
        try:
            response = assoc.send_c_store(ds)
        except (ValueError, AttributeError, RuntimeError) as exc:
            return None, str(exc)
        status = response.get("Status") if response else None
        if status is None:
            return None, "no response (association aborted or timed out)"
        return int(status), STORAGE_SERVICE_CLASS_STATUS.get(int(status), ("", "unknown status"))[1]

    def _record(self, item: _Item, status: int | None, reason: str) -> None:
        with self.lock:
            if status == 0x0000:
                self.report.stored += 1
            elif status in WARNING_STATUSES:
                self.report.stored += 1
                self.report.warnings += 1
            else:
                self.report.failures.append(FileFailure(item.path, status, reason))
            self.bar.update(1)

