"""From a live change to the drift recorded in history, per watching adapter, through the real daemon.

    .venv/bin/python -m bench.watch_latency [--changes 40]

It starts private servers (redis-server, etcd, nats-server; kmock's Kubernetes emulator in this process), a
daemon subprocess in dry-run on SQLite with one target per adapter, each with a one-hour interval so that only
its watch can notice a change (a watched file among them), and a file read through a `layered` source (which
does not watch) polled every second: the baseline, measured in the same run, of what the daemon does without a
watch. Each change writes a value never seen before and waits for the history row that records it; the latency
is that run's finish time (written by the daemon) minus the time of the write. Changes are made one at a time,
adapter after adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import nats
import redis
import sqlalchemy as sa
import yaml

from tests.k8s_emulator import emulator
from tests.servers import (
    ETCD_PASSWORD,
    NATS_PASSWORD,
    REDIS_PASSWORD,
    etcd_server,
    nats_server,
    redis_server,
)

REPO = Path(__file__).resolve().parent.parent


def _etcd_put(url: str) -> Callable[[str], None]:
    def post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else {}
        request = urllib.request.Request(url + path, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))

    token = str(post("/v3/auth/authenticate", {"name": "root", "password": ETCD_PASSWORD})["token"])
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return lambda value: post("/v3/kv/put", {"key": b64("/app/LOG_LEVEL"), "value": b64(value)}, token) and None


class _Nats:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.nc = self.loop.run_until_complete(nats.connect(url, user="reconciler", password=NATS_PASSWORD))
        self.kv = self.loop.run_until_complete(self.nc.jetstream().create_key_value(bucket="bench"))

    def put(self, value: str) -> None:
        self.loop.run_until_complete(self.kv.put("LOG_LEVEL", value.encode()))

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


def _target(name: str, source: dict[str, Any], interval: str) -> dict[str, Any]:
    return {
        "kind": "Target",
        "metadata": {"name": name, "environment": "bench"},
        "spec": {"source": source, "desired": {"LOG_LEVEL": "INFO"}, "interval": interval},
    }


@contextlib.contextmanager
def _servers(folder: Path) -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        redis_port = stack.enter_context(redis_server(folder / "redis"))
        etcd_url = stack.enter_context(etcd_server(folder / "etcd"))
        nats_url = stack.enter_context(nats_server(folder / "nats"))
        _, kubeconfig = stack.enter_context(emulator(folder))
        yield {"redis": redis_port, "etcd": etcd_url, "nats": nats_url, "kubeconfig": kubeconfig}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=40, help="changes per adapter (default 40)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="reconciler-watch-bench-"))
    for sub in ("redis", "etcd", "nats", "desired", "live"):
        (folder / sub).mkdir()
    with _servers(folder) as servers:
        admin = redis.Redis(port=servers["redis"], password=REDIS_PASSWORD, decode_responses=True)
        admin.config_set("notify-keyspace-events", "KA")
        admin.set("app:LOG_LEVEL", "INFO")
        etcd_put = _etcd_put(servers["etcd"])
        etcd_put("INFO")
        bucket = _Nats(servers["nats"])
        bucket.put("INFO")
        api = kubernetes.config.new_client_from_config(str(servers["kubeconfig"]))
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespaced_config_map("bench", {"metadata": {"name": "app"}, "data": {"LOG_LEVEL": "INFO"}})
        live_file = folder / "live" / "app.yaml"
        live_file.write_text("LOG_LEVEL: INFO\n")
        watched_file = folder / "live" / "watched.yaml"
        watched_file.write_text("LOG_LEVEL: INFO\n")
        defaults_file = folder / "live" / "defaults.yaml"
        defaults_file.write_text("LOG_LEVEL: INFO\n")

        def set_configmap(value: str) -> None:
            core.replace_namespaced_config_map(
                "app", "bench", {"metadata": {"name": "app", "namespace": "bench"}, "data": {"LOG_LEVEL": value}}
            )

        writers: dict[str, Callable[[str], None]] = {
            "redis-keys": lambda v: admin.set("app:LOG_LEVEL", v) and None,
            "etcd": etcd_put,
            "nats-kv": bucket.put,
            "kubernetes": set_configmap,
            "file (watched)": lambda v: watched_file.write_text(f"LOG_LEVEL: {v}\n") and None,
            "file (polled every 1s, baseline)": lambda v: live_file.write_text(f"LOG_LEVEL: {v}\n") and None,
        }
        targets = {
            "redis-keys": _target(
                "w-redis",
                {"adapter": "redis-keys", "port": servers["redis"], "password": "redis", "prefix": "app:"},
                "1h",
            ),
            "etcd": _target(
                "w-etcd",
                {
                    "adapter": "etcd",
                    "endpoint": servers["etcd"],
                    "prefix": "/app/",
                    "username": "root",
                    "password": "etcd",
                },
                "1h",
            ),
            "nats-kv": _target(
                "w-nats",
                {
                    "adapter": "nats-kv",
                    "url": servers["nats"],
                    "bucket": "bench",
                    "user": "reconciler",
                    "password": "nats",
                },
                "1h",
            ),
            "kubernetes": _target(
                "w-kube", {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": "bench", "name": "app"}, "1h"
            ),
            "file (watched)": _target("w-watched", {"adapter": "file", "path": str(watched_file)}, "1h"),
            # File targets are watched: the baseline reads its file as the top layer of a `layered` source, which
            # does not watch, so it is polled at its interval as every file target was before.
            "file (polled every 1s, baseline)": _target(
                "w-file",
                {
                    "adapter": "layered",
                    "authoritative": "f",
                    "layers": [
                        {"name": "defaults", "adapter": "file", "path": str(defaults_file)},
                        {"name": "f", "adapter": "file", "path": str(live_file)},
                    ],
                },
                "1s",
            ),
        }
        for target in targets.values():
            (folder / "desired" / f"{target['metadata']['name']}.yaml").write_text(yaml.safe_dump(target))
        (folder / "desired" / "policy.yaml").write_text(
            "kind: Policy\nmetadata: {name: bench}\nspec: {default: reversible}\n"
        )
        database = f"sqlite:///{folder / 'history.db'}"
        env = {
            **os.environ,
            "RECONCILER_DESIRED_DIR": str(folder / "desired"),
            "RECONCILER_DATABASE_URL": database,
            "RECONCILER_FILE__ROOTS": json.dumps([str(folder / "live")]),
            "RECONCILER_ADAPTERS__CREDENTIALS": json.dumps(
                {"redis": REDIS_PASSWORD, "etcd": ETCD_PASSWORD, "nats": NATS_PASSWORD}
            ),
            "RECONCILER_KUBERNETES__KUBECONFIG": str(servers["kubeconfig"]),
            "RECONCILER_HTTP__PORT": "0",
            "RECONCILER_SCHEDULER__JITTER_S": "0",
            "RECONCILER_LOG__LEVEL": "warning",
        }
        subprocess.run([sys.executable, "-m", "reconciler", "db", "upgrade"], env=env, check=True, capture_output=True)
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen([sys.executable, "-m", "reconciler", "run"], env=env, stdout=log, stderr=log)
        engine = sa.create_engine(database)
        try:
            time.sleep(3)  # first passes, watches established
            results: dict[str, list[float]] = {}
            for label, write in writers.items():
                name = targets[label]["metadata"]["name"]
                latencies = []
                for i in range(args.changes):
                    value = f"v{i}-{uuid.uuid4().hex[:8]}"
                    written = datetime.now(UTC)
                    write(value)
                    latencies.append(_recorded(engine, name, value, written, daemon))
                results[label] = latencies
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.close()
            bucket.close()
        _report(results, args.changes)


def _recorded(engine: sa.Engine, target: str, value: str, written: datetime, daemon: subprocess.Popen[bytes]) -> float:
    """Seconds from `written` to the finish of the run that recorded `value` as the target's live value."""
    query = sa.text(
        "SELECT runs.finished_at FROM drifts JOIN runs ON runs.id = drifts.run_id "
        "WHERE drifts.target = :target AND drifts.observed = :observed AND runs.finished_at IS NOT NULL"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited with {daemon.returncode}")
        with engine.connect() as conn:
            row = conn.execute(query, {"target": target, "observed": json.dumps(value)}).first()
        if row is not None:
            finished = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(str(row[0]))
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            return (finished - written).total_seconds()
        time.sleep(0.01)
    raise SystemExit(f"{target}: the change to {value} was not recorded within 30 s")


def _report(results: dict[str, list[float]], changes: int) -> None:
    baseline = statistics.median(results["file (polled every 1s, baseline)"])
    print(f"change -> drift recorded in history, {changes} changes per adapter (seconds)")
    print(f"{'adapter':36} {'median':>8} {'p99':>8} {'max':>8} {'median vs baseline':>20}")
    for label, values in results.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(
            f"{label:36} {statistics.median(values):8.3f} {p99:8.3f} {max(values):8.3f} "
            f"{statistics.median(values) / baseline:19.2f}x"
        )


if __name__ == "__main__":
    main()
