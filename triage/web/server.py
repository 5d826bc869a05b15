"""The web role: the FastAPI app served by uvicorn in a background thread of the daemon."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.errors import ConfigError
from triage.web.app import create_app

LOGGER = logging.getLogger(__name__)

START_TIMEOUT = 30.0
GRACEFUL_SECONDS = 5


class WebServer:
    """Serves the web application with uvicorn in a thread.

    :meth:`start` returns once the socket listens (``port`` is then the bound port, useful with
    port 0); :meth:`stop` lets running requests finish for up to a few seconds.
    """

    name = "web"

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Build the app and listen on ``web.host:web.port``.

        Raises
        ------
        ConfigError
            No secret key outside demo mode, or the address cannot be listened on.
        """
        app = create_app(self.settings, self.factory)
        web = self.settings.web
        config = uvicorn.Config(
            app, host=web.host, port=web.port, log_config=None, lifespan="on", server_header=False,
            proxy_headers=True, timeout_graceful_shutdown=GRACEFUL_SECONDS, access_log=True,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=_serve, args=(server,), name="triage-web", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=GRACEFUL_SECONDS)
                raise ConfigError("web.port", f"{web.host}:{web.port}", "the web server could not start "
                                  "listening (address in use or not allowed? see the log above)")
            time.sleep(0.02)
        self._server, self._thread = server, thread
        self.port = _bound_port(server, web.port)
        LOGGER.info("web application listening on http://%s:%d", web.host, self.port)

    def stop(self) -> None:
        """Stop accepting connections, let running requests finish, and wait for the thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=GRACEFUL_SECONDS + 5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None


def _serve(server: uvicorn.Server) -> None:
    """Run uvicorn; it leaves with SystemExit when it cannot listen (it has logged why)."""
    try:
        server.run()
    except SystemExit as exc:
        LOGGER.error("the web server stopped (exit status %s)", exc.code)


def _bound_port(server: uvicorn.Server, configured: int) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return configured
