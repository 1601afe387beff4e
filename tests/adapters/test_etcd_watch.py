"""Reading an etcd watch stream without a server: framing, confirmation, the target of a key, and its end."""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

import pytest

from reconciler.adapters import etcd_watch
from reconciler.errors import DiscoveryError

PREFIXES = [("/app/", "app"), ("/app/db/", "app-db")]


class Response:
    """Hands over the stream in the pieces given, as read1 does with what has arrived of a chunk."""

    def __init__(self, *pieces: bytes) -> None:
        self._pieces = list(pieces)

    def read1(self, size: int) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


def event(key: str) -> dict[str, Any]:
    return {"kv": {"key": base64.b64encode(key.encode()).decode()}}


def follow(response: Any) -> tuple[list[str], int]:
    changed: list[str] = []
    created = threading.Semaphore(0)
    etcd_watch.follow(response, "etcd /app/*", PREFIXES, changed.append, created)
    confirmed = 0
    while created.acquire(blocking=False):
        confirmed += 1
    return changed, confirmed


def test_messages_split_across_reads_name_the_target_of_the_longest_prefix() -> None:
    """Messages cut anywhere are put back together, the last even without a newline; the longest prefix wins."""
    text = "\n".join(
        [
            json.dumps({"result": {"created": True}}),
            json.dumps({"result": {"events": [event("/app/db/pool"), event("/app/log_level")]}}),
            "",
            json.dumps({"result": {"events": [event("/other/key"), event("/app/db")]}}),
        ]
    ).encode()
    changed, confirmed = follow(Response(text[:10], text[10:70], text[70:71], text[71:]))
    assert confirmed == 1
    assert changed == ["app-db", "app", "app"]


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"error": {"message": "bad"}}, "etcd /app/*: etcd ended the watch: {'message': 'bad'}"),
        ({"result": {"canceled": True, "cancel_reason": "compacted"}}, "etcd cancelled the watch: compacted"),
        ({"result": {"canceled": True}}, "etcd cancelled the watch: no reason given"),
    ],
)
def test_an_error_or_a_cancelled_watch_ends_the_stream(message: dict[str, Any], words: str) -> None:
    """etcd ending or cancelling the watch is a DiscoveryError that says so, with etcd's reason."""
    with pytest.raises(DiscoveryError, match=re.escape(words)):
        follow(Response(json.dumps(message).encode() + b"\n"))
