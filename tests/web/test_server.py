"""WebServer: uvicorn in a thread, port 0, clean stop, clear errors."""

from __future__ import annotations

import socket

import httpx
import pytest

from triage.config import Settings, load_settings
from triage.errors import ConfigError
from triage.web.server import WebServer


def _settings(base: Settings, **web: object) -> Settings:
    return load_settings(data_dir=base.data_dir, database_url=base.database_url,
                         web={"secret_key": "k" * 32, "port": 0, **web})


def test_start_listens_on_the_bound_port_and_stop_closes_it(web_settings: Settings, factory) -> None:
    server = WebServer(_settings(web_settings), factory)
    assert server.name == "web"
    server.start()
    try:
        assert server.port and server.port > 0
        response = httpx.get(f"http://127.0.0.1:{server.port}/api/health", timeout=10)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert "server" not in response.headers
        page = httpx.get(f"http://127.0.0.1:{server.port}/", timeout=10)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    finally:
        server.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    server.stop()  # a second stop is harmless


def test_start_refuses_without_a_secret_key(settings: Settings, factory) -> None:
    server = WebServer(settings, factory)
    with pytest.raises(ConfigError, match="web.secret_key"):
        server.start()
    server.stop()


def test_start_fails_clearly_when_the_port_is_taken(web_settings: Settings, factory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = WebServer(_settings(web_settings, port=port), factory)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            server.start()
