"""Real receivers for the alert tests: an HTTP server, an SMTP server, DCMTK storescp and Orthanc."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.helpers import free_port, wait_for, wait_for_port


@dataclass
class Received:
    """One request the webhook receiver answered."""

    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server in a thread that records every POST and answers with scripted statuses.

    ``statuses`` are used in order, then ``default``; when ``hold`` is set, requests wait until
    ``release`` is set (a slow receiver).
    """

    def __init__(self, statuses: list[int] | None = None, default: int = 200) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.requests: list[Received] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived.set()
                if receiver.hold.is_set():
                    receiver.release.wait(30)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                    receiver.requests.append(Received(dict(self.headers.items()), body, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Received]:
        """Requests answered with a 2xx status."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]


@dataclass
class MailSink:
    """aiosmtpd handler that keeps every message it receives."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


def start_smtp(sink: MailSink, **kwargs: Any) -> Controller:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


class Storescp:
    """DCMTK storescp writing what it receives into ``directory``."""

    def __init__(self, directory: Path, ae_title: str = "PACS") -> None:
        self.directory = directory
        self.ae_title = ae_title
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TCP_NODELAY="1")
        self.log = directory.parent / "storescp.log"
        self.process = subprocess.Popen(
            ["storescp", "--output-directory", str(directory), "--aetitle", ae_title, str(self.port)],
            env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        wait_for_port(self.port)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Orthanc:
    """An Orthanc server run as ``Orthanc cfg.json`` with free ports and its own storage."""

    def __init__(self, root: Path, ae_title: str = "ORTHANC") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.ae_title = ae_title
        self.http_port = free_port()
        self.dicom_port = free_port()
        config = {
            "Name": "triage-test",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": [],
        }
        cfg = root / "cfg.json"
        cfg.write_text(json.dumps(config))
        self.log = root / "orthanc.log"
        self.process = subprocess.Popen(["Orthanc", str(cfg)], cwd=root, stdout=open(self.log, "wb"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT)
        wait_for_port(self.http_port)
        wait_for_port(self.dicom_port)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=10)
        wait_for(lambda: self._ok(), timeout=30)

    def _ok(self) -> bool:
        try:
            return self.http.get("/system").status_code == 200
        except httpx.HTTPError:
            return False

    def instances(self) -> list[str]:
        return list(self.http.get("/instances").json())

    def file(self, instance_id: str) -> bytes:
        return self.http.get(f"/instances/{instance_id}/file").content

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

