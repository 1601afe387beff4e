"""The HTTP JSON adapter: a JSON document served by an HTTP API (a feature-flag service's resolved flags, an
admin endpoint's settings), optionally written back by PUT or PATCH.

source options:
  url: https://flags.internal/api/flags     # GET returns JSON
  pointer: /flags/checkout                  # the part to compare (default: the whole document)
  select: /flags/*/defaultVariant           # or: a projection (read-only): {"a": "on", ...}; see
                                            # reconciler/domain/selection.py
  select_key: name                          # with select: the field that names a list's items
  write: PUT | PATCH                        # absent: read-only, drift is escalated
  write_url: https://...                    # where writes go (default: url)
  headers: {Accept: application/json}       # plain headers; never secrets
  auth: flags-token                         # a credential name: its value is sent as the Authorization header

Writes send the whole document (PUT) or a JSON merge patch (RFC 7396) of the changed top-level keys under the
pointer (PATCH). When the server gives an ETag, the write carries `If-Match`, so a writer that got there first
makes it fail with 412 (a conflict); without one, the document is read again just before the write and
compared with what was staged.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters import formats
from reconciler.adapters.common import Credentials, Options, apply_changes, safe_url
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING, KeyPath, from_pointer, get_in, set_in
from reconciler.domain.selection import Selection, SelectionError
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError
from reconciler.ports import Capabilities, Change, Staged
from reconciler.settings import Settings

OPTIONS = ("url", "pointer", "select", "select_key", "write", "write_url", "headers", "auth")


@dataclass(frozen=True)
class _Where:
    url: str
    pointer: tuple[str, ...]
    write: str | None
    write_url: str
    headers: dict[str, str]
    selection: Selection | None = None
    select_key: str | None = None


@dataclass
class _Pending:
    where: _Where
    etag: str | None
    body: bytes  # the document as read when staging
    new_document: Any  # the whole new document (PUT)
    patch: Any  # the merge patch (PATCH)


class HttpJsonAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpJsonAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "http", OPTIONS)
        url = options.text("url")
        if not url.startswith(("http://", "https://")):
            raise options.problem("url", "must be an http:// or https:// URL")
        if "@" in url.split("/")[2]:
            raise options.problem("url", "holds credentials: name a credential with `auth` instead")
        try:
            pointer = from_pointer(options.text("pointer", ""))
        except ValueError as exc:
            raise options.problem("pointer", str(exc)) from None
        headers = options.mapping("headers")
        if any(h.lower() == "authorization" for h in headers):
            raise options.problem("headers", "Authorization is a secret: name a credential with `auth` instead")
        token = self._credentials.get(options, "auth")
        if token is not None:
            headers["Authorization"] = token
        write = options.text("write", None, choices=("PUT", "PATCH"))
        selection, select_key = self._selection(options, pointer, write)
        return _Where(url, pointer, write, options.text("write_url", url), headers, selection, select_key)

    @staticmethod
    def _selection(options: Options, pointer: KeyPath, write: str | None) -> tuple[Selection | None, str | None]:
        text = options.text("select", None)
        key = options.text("select_key", None)
        if text is None:
            if key is not None:
                raise options.problem("select_key", "names the items of a list that `select` ranges over: give select")
            return None, None
        if pointer:
            raise options.problem("select", "give either pointer or select, not both")
        if write is not None:
            raise options.problem("select", "a selection cannot be written back: drop `write`, or use `pointer`")
        try:
            return Selection.parse(text), key
        except ValueError as exc:
            raise options.problem("select", str(exc)) from None

    def _request(
        self, where: _Where, method: str, url: str, body: bytes | None = None, extra: dict[str, str] | None = None
    ) -> tuple[int, bytes, str | None]:
        headers = {"Accept": "application/json", **where.headers, **(extra or {})}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (http(s) only)
        shown = safe_url(url)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return response.status, response.read(), response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AccessDenied(f"{method} {shown}: the server refused the credentials ({exc.code})") from None
            if exc.code == 412:
                raise ConflictError(f"{method} {shown}: changed by another writer since it was read (412)") from None
            message = f"{method} {shown}: HTTP {exc.code} {exc.reason}"
            if method == "GET":
                raise DiscoveryError(message) from None
            raise ApplyError(message) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = DiscoveryError if method == "GET" else ApplyError
            raise error(f"{method} {shown}: {self._credentials.scrub(str(reason))}") from None

    def _read(self, where: _Where) -> tuple[bytes, str | None, Any]:
        _, body, etag = self._request(where, "GET", where.url)
        try:
            whole = formats.parse_json_value(body)
        except formats.FormatError as exc:  # position and kind only: the answer may hold secrets
            raise DiscoveryError(f"GET {safe_url(where.url)}: the answer is not usable JSON: {exc}") from None
        return body, etag, whole

    def _part(self, where: _Where, whole: Any) -> dict[str, Any]:
        what = "the pointer"
        if where.selection is not None:
            what = f"select {where.selection}"
            try:
                part = where.selection.apply(whole, where.select_key)
            except SelectionError as exc:
                raise DiscoveryError(f"GET {safe_url(where.url)}: {what}: {exc}") from None
        else:
            part = get_in(whole, where.pointer)
        if not isinstance(part, dict):
            kind = "nothing" if part is MISSING else type(part).__name__
            raise DiscoveryError(f"GET {safe_url(where.url)}: {what} selects {kind}, not a JSON object")
        return part

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        body, _, whole = self._read(where)
        part = self._part(where, whole)
        unwritable = {} if where.write else {"": "the source has no `write` method (read-only)"}
        if where.selection is not None:  # what is left out of the selection does not count as a change either
            body = json.dumps(part, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(body), safe_url(where.url), document=part, unwritable=unwritable)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return desired

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        if where.write is None:
            raise ApplyError(f"{safe_url(where.url)}: the source has no `write` method (read-only)")
        body, etag, whole = self._read(where)
        current = self._part(where, whole)
        updated, results, messages = apply_changes(
            current, changes, target.list_keys(), dry_run=dry_run, where=safe_url(where.url)
        )
        new_document = updated
        if where.pointer:
            new_document = json.loads(body)
            set_in(new_document, where.pointer, updated)
        patch: Any = {k: updated.get(k) for k in {*current, *updated} if current.get(k) != updated.get(k)}
        for segment in reversed(where.pointer):
            patch = {segment: patch}
        return Staged(target.name, results, messages, dry_run, _Pending(where, etag, body, new_document, patch))

    def commit(self, staged: Staged) -> None:
        pending: _Pending = staged.handle
        if not staged.writes or staged.dry_run:
            return
        where = pending.where
        extra = {"Content-Type": "application/json"}
        if pending.etag is not None:
            extra["If-Match"] = pending.etag
        else:
            body, _, _ = self._read(where)
            if body != pending.body:
                raise ConflictError(f"{safe_url(where.url)}: changed by another writer while the change was staged")
        if where.write == "PATCH":
            extra["Content-Type"] = "application/merge-patch+json"
            payload = pending.patch
        else:
            payload = pending.new_document
        self._request(where, where.write or "PUT", where.write_url, json.dumps(payload).encode(), extra)

    def discard(self, staged: Staged) -> None:
        """Nothing was written before commit."""
