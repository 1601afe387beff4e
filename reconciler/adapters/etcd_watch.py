"""An etcd watch stream read to its end: its messages off the chunked HTTP response, and the targets they name."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator, Sequence

from reconciler.errors import DiscoveryError


def follow(
    response: http.client.HTTPResponse,
    location: str,
    prefixes: Sequence[tuple[str, str]],
    changed: Callable[[str], None],
    created: threading.Semaphore,
) -> None:
    """Read a watch stream of the targets' (prefix, name) pairs until it ends: release `created` once etcd has
    confirmed the watch, and call `changed` with the target of every changed key (the longest prefix that
    holds it wins). An error or a cancelled watch raises DiscoveryError."""
    ordered = sorted(prefixes, key=lambda p: -len(p[0]))
    for line in _lines(response):
        message = json.loads(line)
        if "error" in message:
            raise DiscoveryError(f"{location}: etcd ended the watch: {message['error']}")
        result = message.get("result", {})
        if result.get("canceled"):
            reason = result.get("cancel_reason") or "no reason given"
            raise DiscoveryError(f"{location}: etcd cancelled the watch: {reason}")
        if result.get("created"):
            created.release()
        for event in result.get("events", []):
            name = base64.b64decode(event["kv"]["key"]).decode("utf-8", "replace")
            for prefix, target in ordered:
                if name.startswith(prefix):
                    changed(target)
                    break


def _lines(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The watch stream's messages: one JSON object per line. Read with read1, which hands over what has
    arrived of the current chunk, and split here: readline on a chunked response mixes peek and read and was
    once seen to lose its place in the chunk framing under load."""
    pending = b""
    while True:
        data = response.read1(65536)
        if not data:
            if pending.strip():
                yield pending
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
