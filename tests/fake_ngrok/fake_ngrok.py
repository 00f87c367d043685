"""A fake ``ngrok`` v3 agent that pyngrok 9 can launch, for offline tests.

Run through the wrapper that :class:`fake_ngrok.FakeNgrok` writes (it execs
this file with the test interpreter). Subcommands, as pyngrok uses them:

* ``--version`` prints ``ngrok version 3.99.0-fake``;
* ``config add-authtoken TOKEN [--log stdout] [--config PATH]`` prints
  ``Authtoken saved to configuration file: PATH``;
* ``start --none --log stdout [--config PATH] [--authtoken T] [--region R]``
  serves the agent API on ``127.0.0.1`` (a free port) and prints the logfmt
  lines pyngrok waits for (``starting web service ... addr=``,
  ``client session established``, ``tunnel session started``).

The auth token is, as for the real agent, ``--authtoken`` or else
``agent.authtoken`` in the ``--config`` file (YAML).

Agent API (config version 3): ``GET /api/endpoints`` -> ``{"endpoints": [...]}``;
``POST /api/endpoints`` with ``{"name", "upstream": {"url"}}`` -> 201 with
``name``, ``url`` (``https://<id>.ngrok.test``), ``uri``, ``upstream``;
``GET``/``DELETE /api/endpoints/<name>`` (DELETE -> 204). Nothing leaves
127.0.0.1 and no public URL is reachable.

Environment (set by the wrapper):

* ``FAKE_NGROK_MODE``: ``ok`` (default); ``fail_start`` (print an
  ``lvl=eror err=...`` line echoing the auth token on stdout and an
  ``ERROR:`` line echoing it on stderr, as real ngrok does for a bad one,
  and exit 1); ``fail_connect`` (every ``POST /api/endpoints`` answers 502);
* ``FAKE_NGROK_ECHO_TOKEN``: ``1``: ``start`` also prints the auth token in
  a line on stdout and one on stderr before its startup lines;
* ``FAKE_NGROK_REFUSE_UPSTREAM``: in ``ok`` mode, only a ``POST`` for this
  upstream URL answers 502;
* ``FAKE_NGROK_START_DELAY``: seconds ``start`` waits before its startup
  lines (a slow agent);
* ``FAKE_NGROK_PID_FILE``: ``start`` writes its PID there;
* ``FAKE_NGROK_LOG``: JSON lines: each invocation (``invoke``, with argv
  and, given ``--config``, that file's ``path``, ``mode`` and ``text`` as
  ``config``), the API address (``listening``) and each API request
  (``request``);
* ``FAKE_NGROK_MAX_LIFETIME``: seconds before ``start`` exits on its own
  (default 120), so a crashed test run leaves no process behind. It also
  exits when its parent process goes away.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote

import yaml  # type: ignore[import-untyped]  # pyngrok needs it; no stubs here

VERSION = "3.99.0-fake"
API_PREFIX = "/api/endpoints"

_log_lock = threading.Lock()


def _record(event: str, **fields: Any) -> None:
    path = os.environ.get("FAKE_NGROK_LOG")
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), **fields})
    with _log_lock, open(path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def _logfmt(lvl: str, msg: str, **fields: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    extra = "".join(f" {key}={value}" for key, value in fields.items())
    print(f't={now} lvl={lvl} msg="{msg}"{extra}', flush=True)


def _option(args: list[str], name: str) -> str | None:
    if name in args:
        index = args.index(name)
        if index + 1 < len(args):
            return args[index + 1]
    return None


def _config_file(args: list[str]) -> dict[str, Any] | None:
    path = _option(args, "--config")
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        mode = os.stat(path).st_mode & 0o777
    except OSError as exc:
        return {"path": path, "error": str(exc)}
    return {"path": path, "mode": mode, "text": text}


def _auth_token(args: list[str]) -> str | None:
    token = _option(args, "--authtoken")
    config = _config_file(args)
    if token is None and config is not None and "text" in config:
        loaded = yaml.safe_load(config["text"]) or {}
        agent = loaded.get("agent") if isinstance(loaded, dict) else None
        if isinstance(agent, dict) and agent.get("authtoken"):
            token = str(agent["authtoken"])
    return token


class _Agent:
    """The tunnel table, shared by the API handler threads."""

    def __init__(self, mode: str, refuse_upstream: str | None) -> None:
        self.mode = mode
        self.refuse_upstream = refuse_upstream
        self.lock = threading.Lock()
        self.endpoints: dict[str, dict[str, Any]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep stderr quiet: the JSON log is the record."""

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, msg: str, err: str) -> None:
        self._reply(
            status,
            {
                "error_code": 100 + status % 100,
                "status_code": status,
                "msg": msg,
                "details": {"err": err},
            },
        )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def do_GET(self) -> None:
        _record("request", method="GET", path=self.path, body=None)
        agent = self.server.agent
        with agent.lock:
            if self.path == API_PREFIX:
                endpoints = list(agent.endpoints.values())
                self._reply(200, {"endpoints": endpoints, "uri": API_PREFIX})
                return
            endpoint = agent.endpoints.get(self._name() or "")
        if endpoint is None:
            self._error(404, "endpoint not found", f"no endpoint at {self.path}")
        else:
            self._reply(200, endpoint)

    def do_POST(self) -> None:
        body = self._body()
        _record("request", method="POST", path=self.path, body=body)
        agent = self.server.agent
        if self.path != API_PREFIX:
            self._error(404, "not found", self.path)
            return
        upstream = body.get("upstream") if isinstance(body, dict) else None
        name = body.get("name") if isinstance(body, dict) else None
        url = upstream.get("url") if isinstance(upstream, dict) else None
        if agent.mode == "fail_connect" or url == agent.refuse_upstream:
            self._error(
                502,
                "failed to start tunnel",
                f"fake ngrok refuses new endpoints to {url} (FAKE_NGROK_MODE)",
            )
            return
        if not isinstance(name, str) or not name or not isinstance(url, str):
            self._error(400, "invalid endpoint", f"need name and upstream.url: {body}")
            return
        ident = secrets.token_hex(6)
        endpoint = {
            "id": f"ep_{ident}",
            "name": name,
            "uri": f"{API_PREFIX}/{quote(name, safe='')}",
            "url": f"https://{ident}.ngrok.test",
            "upstream": {"url": url, "protocol": "http1"},
            "metrics": {},
        }
        with agent.lock:
            if name in agent.endpoints:
                self._error(400, "endpoint already exists", name)
                return
            agent.endpoints[name] = endpoint
        self._reply(201, endpoint)

    def do_DELETE(self) -> None:
        _record("request", method="DELETE", path=self.path, body=None)
        agent = self.server.agent
        with agent.lock:
            removed = agent.endpoints.pop(self._name() or "", None)
        if removed is None:
            self._error(404, "endpoint not found", f"no endpoint at {self.path}")
        else:
            self._reply(HTTPStatus.NO_CONTENT)

    def _name(self) -> str | None:
        prefix = API_PREFIX + "/"
        if not self.path.startswith(prefix):
            return None
        return unquote(self.path[len(prefix) :])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, agent: _Agent) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.agent = agent


def _watchdog(parent: int, lifetime: float) -> None:
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)
    _record("exit", reason="watchdog")
    os._exit(0)


def _start(args: list[str]) -> int:
    if "--none" not in args or _option(args, "--log") != "stdout":
        print("fake ngrok: expected `start --none --log stdout`", file=sys.stderr)
        return 2
    mode = os.environ.get("FAKE_NGROK_MODE", "ok")
    pid_file = os.environ.get("FAKE_NGROK_PID_FILE")
    if pid_file:
        with open(pid_file, "w", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")
    _logfmt("info", "no configuration paths supplied")
    token = _auth_token(args) or "none"
    if mode == "fail_start":
        # Real ngrok echoes a rejected token (ERR_NGROK_105), in its log and
        # on stderr: so does the fake.
        err = f"fake ngrok: authentication failed. Your authtoken: {token}"
        _logfmt("eror", "session closing", obj="tunnels.session", err=f'"{err}"')
        print(f"ERROR:  {err}", file=sys.stderr, flush=True)
        return 1
    if os.environ.get("FAKE_NGROK_ECHO_TOKEN") == "1":
        _logfmt("info", "fake ngrok echoes its authtoken", token=token)
        print(f"fake ngrok on stderr: authtoken {token}", file=sys.stderr, flush=True)
    refuse = os.environ.get("FAKE_NGROK_REFUSE_UPSTREAM") or None
    server = _Server(_Agent(mode, refuse))
    host, port = server.server_address[:2]
    lifetime = float(os.environ.get("FAKE_NGROK_MAX_LIFETIME", "120"))
    threading.Thread(
        target=_watchdog, args=(os.getppid(), lifetime), daemon=True
    ).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _record("listening", addr=f"{host!s}:{port}")
    time.sleep(float(os.environ.get("FAKE_NGROK_START_DELAY") or 0))
    _logfmt("info", "starting web service", obj="web", addr=f"{host!s}:{port}")
    _logfmt("info", "client session established", obj="tunnels.session")
    _logfmt("info", "tunnel session started", obj="tunnels.session")
    threading.Event().wait()
    return 0  # pragma: no cover - only the watchdog or a signal ends it


def main(argv: list[str]) -> int:
    """Dispatch a pyngrok-style command line; return the exit status."""
    args = argv[1:]
    _record("invoke", argv=args, config=_config_file(args))
    if args[:1] in (["--version"], ["version"]):
        print(f"ngrok version {VERSION}", flush=True)
        return 0
    if args[:2] == ["config", "add-authtoken"] and len(args) > 2:
        path = _option(args, "--config") or "ngrok.yml"
        print(f"Authtoken saved to configuration file: {path}", flush=True)
        return 0
    if args[:1] == ["start"]:
        return _start(args)
    print(f"fake ngrok: unsupported command {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
