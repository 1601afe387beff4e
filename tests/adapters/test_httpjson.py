from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.adapters.httpjson import HttpJsonAdapter
from reconciler.cli import app
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port

TOKEN = "Bearer s3cret-token"


class FlagService:
    """A flag service on loopback: GET/PUT/PATCH a JSON document, ETags, a bearer token."""

    def __init__(self, etags: bool = True) -> None:
        self.document: dict[str, Any] = {"service": "flags", "flags": {"checkout": {"new_ui": True, "limit": 10}}}
        self.etags = etags
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if service.etags:
                    self.send_header("ETag", service.etag())
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != TOKEN:
                    self._reply(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                service.requests.append(("GET", dict(self.headers), None))
                if self._authorized():
                    self._reply(200, service.document)

            def _write(self, method: str) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append((method, dict(self.headers), body))
                if not self._authorized():
                    return
                if service.etags and self.headers.get("If-Match") not in (None, service.etag()):
                    self._reply(412, {"error": "precondition failed"})
                    return
                service.document = body if method == "PUT" else merge(service.document, body)
                self._reply(200, service.document)

            def do_PUT(self) -> None:
                self._write("PUT")

            def do_PATCH(self) -> None:
                self._write("PATCH")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/flags"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def etag(self) -> str:
        return '"' + hashlib.sha256(json.dumps(self.document, sort_keys=True).encode()).hexdigest()[:16] + '"'


def merge(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


@pytest.fixture
def service() -> Iterator[FlagService]:
    s = FlagService()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def adapter() -> HttpJsonAdapter:
    return HttpJsonAdapter(Settings(adapters=AdapterSettings(credentials={"flags": TOKEN}, timeout_s=2)))


def source(service: FlagService, **extra: Any) -> dict[str, Any]:
    return {"adapter": "http", "url": service.url, "pointer": "/flags/checkout", "auth": "flags", **extra}


def test_reads_the_part_a_pointer_selects(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    observed = adapter.discover(target(tmp_path, source(service)))
    assert observed.document == {"new_ui": True, "limit": 10}
    assert observed.unwritable == {"": "the source has no `write` method (read-only)"}
    assert service.requests[-1][1]["Authorization"] == TOKEN


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_staged_write_with_if_match(
    tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter, method: str
) -> None:
    t = target(tmp_path, source(service, write=method))
    changes = [Change(("limit",), 10, 20), Change(("new_ui",), True, MISSING), Change(("beta",), MISSING, "on")]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE] * 3
    assert service.document["flags"]["checkout"]["limit"] == 10  # nothing written before commit
    etag = service.etag()
    adapter.commit(staged)
    assert service.document == {"service": "flags", "flags": {"checkout": {"limit": 20, "beta": "on"}}}
    verb, headers, body = service.requests[-1]
    assert verb == method and headers["If-Match"] == etag
    if method == "PATCH":
        assert body == {"flags": {"checkout": {"limit": 20, "new_ui": None, "beta": "on"}}}
        assert headers["Content-Type"] == "application/merge-patch+json"
    assert adapter.discover(t).document == {"limit": 20, "beta": "on"}


def test_a_second_writer_makes_the_commit_a_conflict(
    tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter
) -> None:
    t = target(tmp_path, source(service, write="PUT"))
    staged = adapter.stage(t, [Change(("limit",), 10, 20)], dry_run=False)
    service.document["flags"]["checkout"]["limit"] = 11  # someone else wrote first
    with pytest.raises(ConflictError, match="412"):
        adapter.commit(staged)
    assert service.document["flags"]["checkout"]["limit"] == 11
    stale = adapter.stage(t, [Change(("limit",), 10, 20)], dry_run=False)
    assert stale.results == [ChangeResult.CONFLICT]


def test_without_etags_the_document_is_compared_before_the_write(tmp_path: Path, adapter: HttpJsonAdapter) -> None:
    service = FlagService(etags=False)
    try:
        t = target(tmp_path, source(service, write="PUT"))
        staged = adapter.stage(t, [Change(("limit",), 10, 20)], dry_run=False)
        service.document["service"] = "renamed"
        with pytest.raises(ConflictError, match="changed by another writer"):
            adapter.commit(staged)
        staged = adapter.stage(t, [Change(("limit",), 10, 20)], dry_run=False)
        adapter.commit(staged)
        assert service.document["flags"]["checkout"]["limit"] == 20
    finally:
        service.server.shutdown()
        service.server.server_close()


def test_dry_run_writes_nothing(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    t = target(tmp_path, source(service, write="PUT"))
    staged = adapter.stage(t, [Change(("limit",), 10, 20)], dry_run=True)
    adapter.commit(staged)
    assert service.document["flags"]["checkout"]["limit"] == 10
    assert [r[0] for r in service.requests] == ["GET"]


def test_read_only_source_refuses_to_stage(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    with pytest.raises(ApplyError, match="read-only"):
        adapter.stage(target(tmp_path, source(service)), [Change(("limit",), 10, 20)], dry_run=False)


def test_wrong_token_is_access_denied_and_never_shown(tmp_path: Path, service: FlagService) -> None:
    wrong = HttpJsonAdapter(Settings(adapters=AdapterSettings(credentials={"flags": "Bearer nope"})))
    with pytest.raises(AccessDenied, match="refused the credentials") as caught:
        wrong.discover(target(tmp_path, source(service)))
    assert "nope" not in str(caught.value)


def test_unreachable_server_and_bad_answers(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    down = target(tmp_path, {"adapter": "http", "url": f"http://127.0.0.1:{free_port()}/x"})
    with pytest.raises(DiscoveryError, match="Connection refused"):
        adapter.discover(down)
    with pytest.raises(DiscoveryError, match="the pointer selects bool, not a JSON object"):
        adapter.discover(target(tmp_path, source(service, pointer="/flags/checkout/new_ui")))
    with pytest.raises(DiscoveryError, match="the pointer selects nothing"):
        adapter.discover(target(tmp_path, source(service, pointer="/nope")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://x"}, r"spec\.source\.url: must be an http"),
        ({"url": "http://u:s3cret-token@127.0.0.1/"}, r"spec\.source\.url: holds credentials"),
        ({"pointer": "flags"}, r"spec\.source\.pointer: JSON Pointer 'flags' must start with '/'"),
        ({"write": "POST"}, r"spec\.source\.write: 'POST' is not one of PUT, PATCH"),
        ({"headers": {"Authorization": "x"}}, r"spec\.source\.headers: Authorization is a secret"),
        ({"auth": "other"}, r"spec\.source\.auth: no credential named 'other' .*configured: flags\)"),
        ({"select": "/flags/*/limit"}, r"spec\.source\.select: give either pointer or select, not both"),
        ({"pointer": "", "select": "/flags/**"}, r"spec\.source\.select: .*`\*\*` is not allowed"),
        ({"pointer": "", "select": "/*", "write": "PUT"}, r"spec\.source\.select: a selection cannot be written"),
        ({"select_key": "name"}, r"spec\.source\.select_key: .*give select"),
    ],
)
def test_bad_options(
    tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        adapter.discover(target(tmp_path, source(service, **options)))
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"flags": {"checkout": {"token": "s3cr3t-\ud800"}}}, "not valid Unicode"),
        ({"flags": {"checkout": {"deep": json.loads("[" * 200 + "]" * 200)}}}, "nested more than 100 levels"),
    ],
)
def test_an_answer_the_rest_cannot_hold_is_refused_without_its_content(
    tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter, document: dict[str, Any], words: str
) -> None:
    """A lone surrogate or a 200-level nesting in a service's answer is a clean DiscoveryError naming the URL,
    held to the bounds of a live file, and the error quotes nothing of the answer."""
    service.document = document
    with pytest.raises(DiscoveryError, match=words) as caught:
        adapter.discover(target(tmp_path, source(service)))
    assert "the answer is not usable JSON" in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_select_projects_the_answer(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    """`select` maps a nested answer to the values that matter; a field the service adds later changes neither
    the document nor the fingerprint, so it is no drift and costs no comparison."""
    service.document = {
        "flags": {"a": {"defaultVariant": "on", "state": "ENABLED"}, "b": {"defaultVariant": "off", "state": "X"}}
    }
    t = target(tmp_path, source(service, pointer="", select="/flags/*/defaultVariant"))
    first = adapter.discover(t)
    assert first.document == {"a": "on", "b": "off"}
    assert first.unwritable == {"": "the source has no `write` method (read-only)"}
    service.document["flags"]["a"]["metadata"] = {"owner": "team-x"}
    assert adapter.discover(t).fingerprint == first.fingerprint
    service.document["flags"]["b"]["defaultVariant"] = "on"
    assert adapter.discover(t).document == {"a": "on", "b": "on"}


def test_select_over_a_list_and_a_wrong_shape(tmp_path: Path, service: FlagService, adapter: HttpJsonAdapter) -> None:
    """A list of flags is named by `select_key`; an answer without the selection's fixed part is an error that
    names the URL and the selection, not an empty document (which would read as every flag removed)."""
    service.document = {"features": [{"name": "a", "enabled": True}, {"name": "b", "enabled": False}]}
    listed = target(tmp_path, source(service, pointer="", select="/features/*/enabled", select_key="name"))
    assert adapter.discover(listed).document == {"a": True, "b": False}
    with pytest.raises(DiscoveryError, match=r"select /flags/\*/on: the document has nothing at /flags"):
        adapter.discover(target(tmp_path, source(service, pointer="", select="/flags/*/on")))
    with pytest.raises(DiscoveryError, match=r"select /features/0/enabled selects bool, not a JSON object"):
        adapter.discover(target(tmp_path, source(service, pointer="", select="/features/0/enabled")))


def test_reconciler_diff_with_a_selection(
    tmp_path: Path, service: FlagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconciler diff http:URL,select=...` compares the projection with a file of resolved flags."""
    service.etags = False
    service.document = {"flags": {"a": {"defaultVariant": "on", "state": "X"}, "b": {"defaultVariant": "off"}}}
    (tmp_path / "prod.json").write_text('{"a": "on", "b": "on"}')
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"flags": TOKEN}))
    spec = f"http:{service.url},select=/flags/*/defaultVariant,auth=flags"
    result = CliRunner().invoke(app, ["diff", spec, str(tmp_path / "prod.json"), "-f", "json"])
    assert result.exit_code == 2, result.output
    assert [(d["path"], d["a"], d["b"]) for d in json.loads(result.stdout)["differences"]] == [("/b", "off", "on")]
