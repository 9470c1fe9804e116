"""Prism mock servers for connector contract tests: one process per vendor OpenAPI file.

Prism (`@stoplight/prism-cli`, pinned in the repo's package.json and installed by `make test`)
answers a request the spec accepts with the spec's example, and one it rejects with a 4xx: 422, or
the spec's own 4xx with the reasons in the `sl-violations` header.

The specs are committed in tests/contract/specs/, one folder per vendor, and the tests read only
those copies. Its README.md gives each file's provenance, licence and sha256, the hub calls it checks,
and the Prism pitfalls behind the derived files (the "pitfall N" notes in the tests).

    with PrismServer(SPECS_DIR / "zendesk/...yaml") as server:
        urllib.request.urlopen(server.url + "/api/v2/tickets", ...)

Tests normally take the session fixture `prism` from tests/contract/conftest.py, which starts each
spec at most once per session (2-5 s each) and starts the ones that tests declare with
`@pytest.mark.prism_specs(...)` in parallel.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Self

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PRISM_ENTRYPOINT = ROOT / "node_modules" / "@stoplight" / "prism-cli" / "dist" / "index.js"
SPECS_DIR = ROOT / "tests" / "contract" / "specs"
REQUIRE_ENV = "HUB_REQUIRE_PRISM"
MARKER = "prism_specs"
# All ~18 declared specs boot at once: about 20 s on an idle 2-core machine, longer when other
# work shares it. Only a server that never comes up waits this long.
STARTUP_TIMEOUT = 60.0

_LISTENING = re.compile(r"Prism is listening on (http://\S+?:(\d+))\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PrismError(Exception):
    """Prism could not be started, or a spec file is missing."""


class PrismStartError(PrismError):
    """The Prism process exited or did not report its port in time; the message holds its output."""


def vendor_specs_dir() -> Path:
    """The committed vendor specs, tests/contract/specs/. There is no override: every run, local or CI,
    tests the same files, whose checksums tests/contract/specs/README.md records."""
    return SPECS_DIR


def prism_required() -> bool:
    """True in CI (`CI=true`, set by most CI services) or with `HUB_REQUIRE_PRISM=1` (set by .ci/run)."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes"} for name in ("CI", REQUIRE_ENV))


def unavailable_reason() -> str | None:
    """Why Prism cannot run on this machine, or None when it can.

    Only node and Prism can be missing: the specs are in the repo, so a missing spec file is never a
    reason to skip (PrismRegistry and PrismServer raise PrismError for it, a test failure)."""
    if shutil.which("node") is None:
        return "node is not on PATH (install Node.js 20+ and npm, then run `make test`)"
    if not PRISM_ENTRYPOINT.is_file():
        return f"Prism is not installed ({PRISM_ENTRYPOINT.relative_to(ROOT)} missing): run `make test` or `npm ci`"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail in CI so CI can never pass with the contract tests silently skipped."""
    if prism_required():
        pytest.fail(f"Prism contract tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"Prism contract tests skipped: {reason}")


def require_prism() -> None:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)


def violations(response_headers: Mapping[str, str] | Any) -> list[dict[str, Any]]:
    """The parsed `sl-violations` header: Prism's list of reasons a request broke the spec ([] if none).

    Takes any header mapping (dict, http.client.HTTPMessage, urllib3's HTTPHeaderDict). Each item is
    like {"location": ["request", "body"], "severity": "Error", "code": "required", "message": ...}.
    """
    raw = response_headers.get("sl-violations") if hasattr(response_headers, "get") else None
    if raw is None:
        raw = next((v for k, v in dict(response_headers).items() if k.lower() == "sl-violations"), None)
    if not raw:
        return []
    parsed = json.loads(raw)
    return parsed if isinstance(parsed, list) else [parsed]


class PrismServer:
    """`prism mock` for one spec on 127.0.0.1 and a free port, in its own process group.

    `start()` launches without waiting, so several servers can boot in parallel; `wait_ready()`
    blocks until Prism prints its port. The context manager does both, and stops on exit.
    """

    def __init__(
        self,
        spec_path: str | os.PathLike[str],
        *,
        errors: bool = True,
        host: str = "127.0.0.1",
        startup_timeout: float = STARTUP_TIMEOUT,
        entrypoint: str | os.PathLike[str] = PRISM_ENTRYPOINT,
    ) -> None:
        self.spec_path = Path(spec_path)
        self.errors = errors
        self.host = host
        self.startup_timeout = startup_timeout
        self.entrypoint = Path(entrypoint)
        self.url: str | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lines: deque[str] = deque(maxlen=20_000)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._started_at = 0.0
        self._error: PrismStartError | None = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"PrismServer({self.spec_path.name!r}, url={self.url!r})"

    @property
    def command(self) -> list[str]:
        node = shutil.which("node") or "node"
        flags = ["--errors"] if self.errors else []
        return [node, str(self.entrypoint), "mock", "-h", self.host, "-p", "0", *flags, str(self.spec_path)]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def output(self) -> list[str]:
        """Prism's log so far (startup, then a few lines per request, `Violation:` lines included)."""
        return list(self._lines)

    def start(self) -> PrismServer:
        if self._proc is not None:
            return self
        if not self.spec_path.is_file():
            raise PrismError(f"spec file not found: {self.spec_path}")
        self._started_at = time.monotonic()
        # Its own session: killing the group also ends node children (tests/contract/specs/README.md, pitfall 7).
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
            env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
        )
        self._reader = threading.Thread(target=self._read, name=f"prism-{self.spec_path.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        # Keep draining after startup: Prism logs every request and would block on a full pipe.
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = _ANSI.sub("", raw.rstrip("\n"))
            self._lines.append(line)
            if self.port is None and (match := _LISTENING.search(line)):
                self.url, self.port = match.group(1), int(match.group(2))
                self.startup_seconds = time.monotonic() - self._started_at
                self._ready.set()
        self._ready.set()  # EOF: wake wait_ready(), which reports the exit

    def wait_ready(self) -> PrismServer:
        """Block until Prism listens; raises PrismStartError (with Prism's output) on exit or timeout."""
        if self._error is not None:
            raise self._error
        if self._proc is None:
            self.start()
        remaining = self.startup_timeout - (time.monotonic() - self._started_at)
        self._ready.wait(max(remaining, 0))
        if self.port is not None:
            return self
        code = self._proc.poll() if self._proc else None
        if code is None and self._reader is not None and not self._reader.is_alive():
            try:  # output closed: the process is exiting
                code = self._proc.wait(timeout=5) if self._proc else None
            except subprocess.TimeoutExpired:
                pass
        if code is not None:
            if self._reader is not None:
                self._reader.join(5)
            problem = f"exited with code {code} before listening"
        else:
            problem = f"did not report its port within {self.startup_timeout:g} s"
        self.stop()
        tail = "\n".join(list(self._lines)[-30:]) or "(no output)"
        self._error = PrismStartError(
            f"Prism {problem} for {self.spec_path}\ncommand: {' '.join(self.command)}\noutput:\n{tail}"
        )
        raise self._error

    def stop(self) -> None:
        proc = self._proc
        if proc is None or self._stopped:
            return
        self._stopped = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PrismRegistry:
    """At most one server per (spec, errors) for a test session; `registry(name)` → a ready server.

    `name` is a path relative to tests/contract/specs/ (or an absolute path, e.g. a spec a test
    extended and wrote to tmp_path). A name with no file raises PrismError before anything checks for
    node or Prism, so it fails even where Prism tests skip. A server that failed to start raises the
    same PrismStartError each time.
    """

    def __init__(self, specs_dir: Path | None = None, *, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.specs_dir = specs_dir or vendor_specs_dir()
        self.startup_timeout = startup_timeout
        self._servers: dict[tuple[Path, bool], PrismServer] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str | os.PathLike[str]) -> Path:
        path = Path(name)
        path = path if path.is_absolute() else self.specs_dir / path
        if not path.is_file():
            raise PrismError(f"no spec file {path} (names are relative to {self.specs_dir})")
        return path

    def has_spec(self, name: str | os.PathLike[str]) -> bool:
        try:
            self.resolve(name)
        except PrismError:
            return False
        return True

    def start(self, *names: str | os.PathLike[str], errors: bool = True) -> list[PrismServer]:
        """Launch every spec not yet running, then wait for all of them: boots run in parallel.

        Every name must resolve to a file (else PrismError); then, without node or Prism, the test
        skips locally and fails in CI. Start failures are kept on their server and raised when a
        test asks for that spec.
        """
        paths = [self.resolve(name) for name in names]
        require_prism()
        with self._lock:
            servers = []
            for path in paths:
                key = (path, errors)
                if key not in self._servers:
                    server = PrismServer(key[0], errors=errors, startup_timeout=self.startup_timeout)
                    self._servers[key] = server.start()
                servers.append(self._servers[key])
        for server in servers:
            try:
                server.wait_ready()
            except PrismStartError:
                pass
        return servers

    def get(self, name: str | os.PathLike[str], *, errors: bool = True) -> PrismServer:
        (server,) = self.start(name, errors=errors)
        return server.wait_ready()

    __call__ = get

    @property
    def servers(self) -> list[PrismServer]:
        return list(self._servers.values())

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()


def declared_specs(items: Iterable[pytest.Item]) -> list[str]:
    """Spec names from `@pytest.mark.prism_specs(...)` on the selected tests, in first-seen order."""
    names: dict[str, None] = {}
    for item in items:
        for marker in item.iter_markers(MARKER):
            names.update(dict.fromkeys(str(arg) for arg in marker.args))
    return list(names)


# --- plain HTTP for probing a mock (connector tests call the connectors instead) ------------------


@dataclass
class Reply:
    status: int
    headers: Message  # case-insensitive .get(); Prism sends some names in lower case
    body: bytes
    violations: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


# Never send 127.0.0.1 traffic through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    form: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    basic_auth: tuple[str, str] | None = None,
    bearer: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request with urllib; any status (4xx/5xx included) comes back as a Reply."""
    sent = {"Accept": "application/json", **(headers or {})}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        sent.setdefault("Content-Type", "application/json")
    elif form is not None:
        data = urllib.parse.urlencode(list(form.items()) if isinstance(form, Mapping) else list(form)).encode()
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if basic_auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, got, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, error.headers, error.read()
    return Reply(status, got, body, violations(got))
