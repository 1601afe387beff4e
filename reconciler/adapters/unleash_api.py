"""The part of Unleash's HTTP API the unleash adapter uses, over the standard library's HTTP client: one
keep-alive connection per read or write, errors mapped to reconciler's, the token never in a message."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.adapters import formats
from reconciler.errors import AccessDenied, ReconcilerError


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any  # the parsed JSON body; None for 304 and empty answers
    etag: str | None


class UnleashApi:
    """Requests to one Unleash server, on one connection (closed by `close`, or by `with`)."""

    def __init__(self, url: str, token: str | None, timeout_s: float, scrub: Callable[[str], str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self._base = parts.path.rstrip("/")
        self._shown = url
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
        self._token = token
        self._scrub = scrub

    def __enter__(self) -> UnleashApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def call(
        self,
        method: str,
        path: str,
        error: type[ReconcilerError],
        body: Any = None,
        etag: str | None = None,
        missing: str | None = None,
    ) -> Answer:
        """One request. 304 and 2xx are answers; 401/403 is AccessDenied; 404 is `error(missing)` when
        `missing` says what was not found; anything else is `error` with the server's message."""
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = self._token
        if etag is not None:
            headers["If-None-Match"] = etag
        payload = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body)
        status, raw, tag = self._send(method, path, payload, headers, error)
        if status == 304:
            return Answer(status, None, tag)
        data = self._parse(method, path, raw, error) if raw else None
        if 200 <= status < 300:
            return Answer(status, data, tag)
        message = self._message(data, status)
        where = f"{method} {self._shown}{path}"
        if status in (401, 403):
            raise AccessDenied(f"{where}: Unleash refused the token ({status}): {message}")
        if status == 404 and missing is not None:
            raise error(f"{self._shown}: {missing}")
        raise error(f"{where}: Unleash answered {status}: {message}")

    def _send(
        self, method: str, path: str, payload: str | None, headers: dict[str, str], error: type[ReconcilerError]
    ) -> tuple[int, bytes, str | None]:
        for attempt in (1, 2):
            try:
                self._conn.request(method, self._base + path, payload, headers)
                response = self._conn.getresponse()
                return response.status, response.read(), response.headers.get("ETag")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._conn.close()  # a kept-alive connection the server closed: once more on a new one
                if attempt == 2 or method != "GET":
                    raise error(f"{method} {self._shown}{path}: {self._scrub(str(exc))}") from None
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                raise error(f"{method} {self._shown}{path}: cannot reach Unleash: {self._scrub(str(exc))}") from None
        raise AssertionError("unreachable")

    def _parse(self, method: str, path: str, raw: bytes, error: type[ReconcilerError]) -> Any:
        try:
            return formats.parse_json_value(raw)
        except formats.FormatError as exc:  # position and kind only: the answer may hold secrets
            raise error(f"{method} {self._shown}{path}: the answer is not usable JSON: {exc}") from None

    def _message(self, data: Any, status: int) -> str:
        if isinstance(data, dict):
            details = data.get("details")
            if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("message"):
                return self._scrub(str(details[0]["message"]))
            if data.get("message"):
                return self._scrub(str(data["message"]))
        return f"HTTP {status}"


def quote(name: str) -> str:
    """A path segment (a project, environment or flag name) safe in a URL."""
    return urllib.parse.quote(name, safe="")
