"""Which calling AE titles may associate: ``[dicom] allowed_aets``, overridden by the admin page at run time.

The admin's list (``dicom.allowed_aets`` in the admin_settings table) is read at most every few
seconds, so a change applies without a restart; an empty list lets any AE in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from triage.db.admin import ALLOWED_AETS, get_admin_setting

LOGGER = logging.getLogger(__name__)

CACHE_SECONDS = 5.0


class AllowedAETs:
    """The current allow list, cached for ``cache_seconds``.

    Parameters
    ----------
    configured
        The list from the settings, used until the admin sets one (and while the database is down
        and no admin list was read yet).
    factory
        Session factory to read the admin setting.
    cache_seconds
        How long a list read from the database is used.
    """

    def __init__(
        self, configured: Sequence[str], factory: sessionmaker[Session], cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self.configured = frozenset(a.strip() for a in configured)
        self.factory = factory
        self.cache_seconds = cache_seconds
        self._current = self.configured
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> frozenset[str]:
        """The allowed AE titles now (empty: any AE)."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                self._current = self._read()
                self._read_at = time.monotonic()
            return self._current

    def allows(self, ae_title: str) -> bool:
        """Whether ``ae_title`` (trailing spaces ignored) may associate."""
        allowed = self.current()
        return not allowed or ae_title.strip() in allowed

    def _read(self) -> frozenset[str]:
        try:
            with self.factory() as session:
                value = get_admin_setting(session, ALLOWED_AETS)
        except Exception as exc:
            LOGGER.warning("cannot read the allowed AE titles (%s): keeping the last list", type(exc).__name__)
            return self._current
        if value is None:
            return self.configured
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            LOGGER.error("the admin setting %s is not a list of AE titles: %r; using the configured list",
                         ALLOWED_AETS, value)
            return self.configured
        return frozenset(v.strip() for v in value)
