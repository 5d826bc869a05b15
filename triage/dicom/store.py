"""The durable file store: received bytes written to a temporary file, fsynced, renamed, directory fsynced.

Paths are ``<study uid>/<series uid>/<sop instance uid>.dcm`` under the store root, built only from
UIDs that :func:`triage.dicom.header.check_uid` accepted; temporary files live in ``.incoming/``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from triage.dicom.header import check_uid

LOGGER = logging.getLogger(__name__)

INCOMING = ".incoming"
SUFFIX = ".dcm"


@dataclass(frozen=True)
class StoredFile:
    """A file that is durable in the store.

    Attributes
    ----------
    relative
        Its path relative to the store root (what the database keeps).
    size
        Its size in bytes.
    created
        False when a file of that name was there before (it was replaced).
    """

    relative: str
    size: int
    created: bool


class DicomStore:
    """Durable writes of DICOM files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / INCOMING

    def prepare(self, stale_seconds: float = 3600.0) -> None:
        """Create the directories and delete temporary files older than ``stale_seconds`` (left by a crash)."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        limit = time.time() - stale_seconds
        for path in self.incoming.glob("*.part"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    LOGGER.info("removed a temporary file left by an interrupted store: %s", path.name)
            except FileNotFoundError:
                pass

    @staticmethod
    def relative_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
        """The store path of an instance, from validated UIDs only (raises Rejection otherwise)."""
        parts = (
            check_uid(study_uid, "Study Instance UID"),
            check_uid(series_uid, "Series Instance UID"),
            check_uid(sop_instance_uid, "SOP Instance UID") + SUFFIX,
        )
        return "/".join(parts)

    def exists(self, relative: str) -> bool:
        """Whether a file is stored under ``relative``."""
        return (self.root / relative).is_file()

    def write(self, relative: str, data: bytes) -> StoredFile:
        """Write ``data`` durably under ``relative``: temporary file, fsync, rename, directory fsync.

        Raises
        ------
        OSError
            When any step fails; the temporary file is removed and nothing is left under ``relative``
            that was not there before.
        """
        target = self.root / relative
        temp = self.incoming / f"{uuid.uuid4().hex}.part"
        try:
            try:
                _write_synced(temp, data)
            except FileNotFoundError:  # the store was recreated after a fault: so is .incoming
                self.incoming.mkdir(parents=True, exist_ok=True)
                _write_synced(temp, data)
            created = self._make_dirs(target.parent)
            existed = not created and target.exists()
            os.replace(temp, target)
        except BaseException:
            _unlink_quietly(temp)
            raise
        try:
            _fsync_dir(target.parent)
        except BaseException:
            if not existed:
                _unlink_quietly(target)
            raise
        return StoredFile(relative, len(data), not existed)

    def discard(self, relative: str) -> None:
        """Remove a file written by :meth:`write` whose database row could not be committed."""
        target = self.root / relative
        _unlink_quietly(target)
        try:
            _fsync_dir(target.parent)
        except OSError as exc:
            LOGGER.warning("could not sync %s after removing a file: %s", target.parent, exc.strerror)

    def _make_dirs(self, directory: Path) -> bool:
        """Create ``directory`` and missing parents, each made durable in its parent; True if created."""
        if directory.is_dir():
            return False
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():
                    raise
            _fsync_dir(path.parent)
        return True


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        LOGGER.warning("could not remove %s: %s", path.name, exc.strerror)
