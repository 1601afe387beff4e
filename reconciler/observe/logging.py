"""structlog setup: JSON lines on stderr, a run_id bound per pass, secret-looking fields masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential)", re.IGNORECASE)


def _mask_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A last line of defence: fields whose names look secret are never written out."""
    for key in list(event):
        if key != "event" and _SECRET_KEY.search(key):
            event[key] = "<redacted>"
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Looked up on every use, not once: whoever replaced sys.stderr since (a test runner) gets the lines.
    return structlog.PrintLogger(file=sys.stderr)


def configure(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog (and stdlib logging, for libraries) once per process."""
    numeric = logging.getLevelName(level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


bind_contextvars = structlog.contextvars.bind_contextvars
bound_contextvars = structlog.contextvars.bound_contextvars
clear_contextvars = structlog.contextvars.clear_contextvars
