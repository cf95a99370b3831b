"""The exchange as separate gunicorn processes on one throwaway database, for what only several processes show:
counters that must be shared between workers, and what really reaches a server's stderr.

`LiveSite` migrates a fresh SQLite file, creates the Acme platform with a key and alice (exchange analyst),
and starts any number of single-worker gunicorn servers on it; each server's stderr goes to its own file.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from tests.admin_world import PASSWORD
from tests.reliability.server import Gunicorn, free_port, manage, production_env, setup


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    base_url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Answer:
    """One raw HTTP request; `path` goes on the request line as given (percent-escapes stay escaped)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class LiveSite:
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    servers: list[Gunicorn] = field(default_factory=list)
    acme_key: str = ""

    def __post_init__(self) -> None:
        self.env = production_env(f"sqlite:///{self.tmp / 'live.sqlite3'}", log_level="INFO")
        for name in ("REDIS_URL", "LOG_FORMAT"):  # only what the test asks for
            self.env.pop(name, None)
        self.env.update(self.extra_env)
        self.acme_key = setup(self.env, "acme")["acme"]
        password_file = self.tmp / "password"
        password_file.write_text(PASSWORD)
        manage(self.env, "create_analyst", "alice", "--exchange", "--password-file", str(password_file))

    def start(self, count: int, threads: int = 1) -> list[Gunicorn]:
        for _ in range(count):
            index = len(self.servers)
            logfile = self.tmp / f"server-{index}.log"
            server = Gunicorn(self.env, free_port(), logfile, workers=1, threads=threads)
            server.start()
            self.servers.append(server)
        return self.servers

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def stderr(self) -> str:
        return "\n".join(server.logfile.read_text(errors="replace") for server in self.servers)

    def login(self, server: Gunicorn, username: str, password: str) -> int:
        """Post the admin login form like a browser (CSRF cookie and token first); the status code."""
        form = request(server.url, "GET", "/admin/login/")
        cookie = re.search(r"csrftoken=([^;]+)", form.headers.get("set-cookie", ""))
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
        assert cookie and token, (form.status, form.headers)
        body = urlencode(
            {"csrfmiddlewaretoken": token.group(1).decode(), "username": username, "password": password}
        ).encode()
        answer = request(
            server.url,
            "POST",
            "/admin/login/",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie.group(1)}"},
        )
        return answer.status
