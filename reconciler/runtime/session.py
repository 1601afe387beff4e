"""Sign-in sessions of the web UI: started with the API token (RECONCILER_HTTP__API_TOKEN) and a name, which
history then records as the actor; kept in memory, named by an HttpOnly, SameSite=Strict cookie; each holds the
CSRF token that every form carries. Without an API token no session can start: the UI stays read-only."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from reconciler.runtime.api import token_matches

COOKIE = "reconciler_session"
TTL_S = 8 * 3600.0  # a working day; then sign in again
MAX_SESSIONS = 1000  # the oldest goes first past this: memory stays bounded whoever signs in
MAX_ACTOR = 64


@dataclass
class Session:
    actor: str
    csrf: str
    expires: float
    flash: tuple[str, bool] | None = None  # one message for the next page (text, is an error)

    def take_flash(self) -> tuple[str, bool] | None:
        flash, self.flash = self.flash, None
        return flash


class Sessions:
    def __init__(self, token: str | None, ttl_s: float = TTL_S) -> None:
        self._token = token
        self._ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def actions_on(self) -> bool:
        return self._token is not None

    def start(self, actor: str, token: str) -> tuple[str, Session] | None:
        """A new session for `actor` if `token` is the API token; None otherwise (or when actions are off)."""
        if self._token is None or not token_matches(self._token, token.encode("utf-8")):
            return None
        sid = secrets.token_urlsafe(32)
        session = Session(actor.strip()[:MAX_ACTOR], secrets.token_urlsafe(32), time.monotonic() + self._ttl_s)
        with self._lock:
            now = time.monotonic()
            for old in [k for k, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[old]
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[sid] = session
        return sid, session

    def get(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid or self._token is None:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[sid]
                return None
        return session

    def end(self, request: Request) -> None:
        with self._lock:
            self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    @staticmethod
    def csrf_ok(session: Session, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())

    @staticmethod
    def set_cookie(response: Response, request: Request, sid: str) -> None:
        response.set_cookie(
            COOKIE, sid, httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https"
        )

    @staticmethod
    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def local_path(value: object, default: str = "/") -> str:
    """Where to go after a form: a path on this server only (never another host)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
