"""kmock's Kubernetes emulator, served on loopback from a thread of its own, with what our tests need added.

kmock keeps objects in memory and merges every update into them. A real API server also versions objects
(metadata.resourceVersion, refusing a stale one with 409), replaces them on PUT, and validates without
storing on `?dryRun=All`: this subclass adds those three, so that the Kubernetes adapter is tested against
the behaviour it relies on. Everything else is kmock's.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal import enums, rendering


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    _versions = itertools.count(1000)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        named = request.resource is not None and request.name is not None and isinstance(request.data, dict)
        if named and request.method in (enums.method.PUT, enums.method.PATCH):
            return await self._update(request)
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        response: aiohttp.web.StreamResponse = await super()._handle(request)
        return response

    async def _update(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            stored = self.objects[key] if key in self.objects else None  # noqa: SIM401 - ObjectsArray has no get()
            if stored is None or stored.deleted:
                return _status(404, "NotFound", f"{request.name} not found")
            current = stored.raw
            new = _merge(current, request.data) if request.method == enums.method.PATCH else dict(request.data)
            wanted = new.get("metadata", {}).get("resourceVersion")
            if request.method == enums.method.PATCH:
                wanted = request.data.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != current.get("metadata", {}).get("resourceVersion"):
                message = "the object has been modified; please apply your changes to the latest version"
                return _status(409, "Conflict", message)
            if "dryRun" in request.params:
                return aiohttp.web.json_response(new)
            new.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
            stored.delete()  # a replacement, rather than kmock's merge into the old version
            stored.create(new)
            await self._buses[request.resource].put({"type": "MODIFIED", "object": new})
        return aiohttp.web.json_response(new)


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return aiohttp.web.json_response(body, status=code)


@contextmanager
def emulator(folder: Path) -> Iterator[tuple[Emulator, Path]]:
    """A running emulator and a kubeconfig file that points at it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    handler = Emulator()
    server = kmock.Server(handler)

    async def start() -> None:
        await handler.__aenter__()
        await server.__aenter__()

    async def stop() -> None:
        await server.__aexit__(None, None, None)
        await handler.__aexit__(None, None, None)

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(server.url).rstrip("/")}}],
                "users": [{"name": "test", "user": {"token": "kube-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    try:
        yield handler, kubeconfig
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
