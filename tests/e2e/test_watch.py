"""A watched change reaches the daemon without waiting for the interval; a broken watch comes back."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import _ready, free_port, get, metric, reconciler, wait_for
from tests.servers import ETCD_PASSWORD, etcd_server

pytestmark = pytest.mark.e2e


def put(url: str, key: str, value: str) -> None:
    def post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else {}
        request = urllib.request.Request(url + path, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))

    token = post("/v3/auth/authenticate", {"name": "root", "password": ETCD_PASSWORD})["token"]
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, token)


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with etcd_server(tmp_path / "etcd-data") as etcd_url:
        put(etcd_url, "/app/LOG_LEVEL", "INFO")
        desired = tmp_path / "desired"
        desired.mkdir()
        target = {
            "kind": "Target",
            "metadata": {"name": "app-etcd", "environment": "prod"},
            "spec": {
                "source": {
                    "adapter": "etcd",
                    "endpoint": etcd_url,
                    "prefix": "/app/",
                    "username": "root",
                    "password": "etcd",
                },
                "desired": {"LOG_LEVEL": "INFO"},
                "interval": "1h",
            },
        }
        (desired / "app.yaml").write_text(yaml.safe_dump(target))
        live = tmp_path / "live"
        live.mkdir()
        (live / "app.env").write_text("LOG_LEVEL=INFO\n")
        file_target = {
            "kind": "Target",
            "metadata": {"name": "app-file", "environment": "staging"},
            "spec": {
                "source": {"adapter": "file", "path": "../live/app.env"},
                "desired": {"LOG_LEVEL": "INFO"},
                "interval": "1h",
            },
        }
        (desired / "file.yaml").write_text(yaml.safe_dump(file_target))
        port = free_port()
        env = {
            **os.environ,
            "RECONCILER_DESIRED_DIR": str(desired),
            "RECONCILER_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}",
            "RECONCILER_ADAPTERS__CREDENTIALS": json.dumps({"etcd": ETCD_PASSWORD}),
            "RECONCILER_HTTP__PORT": str(port),
            "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        }
        monkeypatch.setenv("RECONCILER_DATABASE_URL", env["RECONCILER_DATABASE_URL"])
        assert reconciler("db", "upgrade").returncode == 0
        log = (tmp_path / "daemon.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(base, process), what="/readyz")
            yield {"base": base, "etcd": etcd_url, "log": tmp_path / "daemon.log", "process": process, "live": live}
        finally:
            process.kill()
            process.wait(10)
            log.close()


def test_a_watched_change_is_seen_at_once(watched: dict[str, Any]) -> None:
    base = watched["base"]

    def drift() -> float | None:
        return metric(
            get(base + "/metrics")[1],
            "reconciler_drift_items",
            app="",
            environment="prod",
            **{"class": "escalate"},
        )

    wait_for(
        lambda: drift() == 0.0 and metric(get(base + "/metrics")[1], "reconciler_watches", adapter="etcd"),
        what="the first pass and a running watch",
    )
    started = time.monotonic()
    put(watched["etcd"], "/app/LOG_LEVEL", "DEBUG")
    wait_for(lambda: drift() == 1.0, timeout_s=10, what="the drift of a watched change")
    assert time.monotonic() - started < 5  # the interval is an hour: only the watch can have seen it
    text = get(base + "/metrics")[1]
    # The watch saw the change (an event), or its stream broke on it and the supervisor re-established it and
    # queued the target (seen once under a loaded CI run: http.client failed to parse a chunk of the stream).
    events = metric(text, "reconciler_watch_events_total", adapter="etcd") or 0
    breaks = metric(text, "reconciler_watch_errors_total", adapter="etcd") or 0
    assert events + breaks >= 1
    if events:  # observed when the pass the event queued has ended: after the drift gauge, and after a pass
        # already running when the event came (which may be the one that showed the drift) has ended too
        wait_for(
            lambda: (
                (metric(get(base + "/metrics")[1], "reconciler_detection_latency_seconds_count", adapter="etcd") or 0)
                >= 1
            ),
            timeout_s=10,
            what="the detection latency of the watched change",
        )
    events = [json.loads(line) for line in watched["log"].read_text().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "watch started" and e.get("adapter") == "etcd" for e in events)


def test_a_watched_file_is_seen_at_once_even_when_an_editor_renames_over_it(watched: dict[str, Any]) -> None:
    base, live = watched["base"], watched["live"]

    def drift() -> float | None:
        text = get(base + "/metrics")[1]
        return metric(text, "reconciler_drift_items", app="", environment="staging", **{"class": "escalate"})

    wait_for(
        lambda: drift() == 0.0 and metric(get(base + "/metrics")[1], "reconciler_watches", adapter="file") == 1,
        what="the file target's first pass and its watch",
    )
    started = time.monotonic()
    (live / ".app.env.swp").write_text("LOG_LEVEL=DEBUG\n")
    os.replace(live / ".app.env.swp", live / "app.env")
    wait_for(lambda: drift() == 1.0, timeout_s=10, what="the drift of a watched file")
    assert time.monotonic() - started < 5  # the interval is an hour: the watch (or the pass queued once it was
    # established, if that came after the edit) saw it; the watch reports the rename within its own debounce
    wait_for(
        lambda: (metric(get(base + "/metrics")[1], "reconciler_watch_events_total", adapter="file") or 0) >= 1,
        timeout_s=5,
        what="the watch's event for the rename",
    )
