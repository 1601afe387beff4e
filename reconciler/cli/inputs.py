"""What `reconciler diff` compares: a document read from a file, stdin, an HTTP(S) URL, or any adapter.

An input is one of
  -                   standard input, in --input-format (default: JSON when it starts with `{`, else YAML)
  PATH                a file in any supported format (by its extension, else --input-format); `file:PATH` too
  http(s)://...       JSON from an HTTP API, read by the http adapter (its limits and timeouts)
  ADAPTER:ADDRESS     any installed adapter: ADDRESS is the adapter's main option, then `,option=value`
                      pairs (`etcd:/config/app/,endpoint=http://127.0.0.1:2379`, `env:1234`,
                      `kubernetes:payments-api,kind=ConfigMap,namespace=payments`), or every option as a YAML
                      flow mapping (`redis-keys:{prefix: "app:", port: 6380}`)
Read errors name the input; a file's parse error gives line and column, never content.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import yamlload
from reconciler.adapters import formats, registry
from reconciler.domain.manifest import Target
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.ports import Adapter

# The option an address names when it gives no `option=`: the one that tells one source from another.
MAIN_OPTION = {
    "file": "path",
    "env": "command",  # digits only: pid
    "http": "url",
    "postgres": "host",
    "redis-config": "host",
    "redis-keys": "prefix",
    "etcd": "prefix",
    "nats-kv": "bucket",
    "kubernetes": "name",
}
_PAIR = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_-]*=)")
_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*=")
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class Document:
    """One side of a diff: its name as given, the document, and how to render another document the way this
    source holds values (strings-only sources render numbers and booleans as strings)."""

    name: str
    doc: dict[str, Any]
    render_like: Callable[[dict[str, Any]], dict[str, Any]]


def _same(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def read(spec: str, adapters: Callable[[str], Adapter], input_format: str | None) -> Document:
    """Read one input; a ConfigurationError or ReconcilerError naming `spec` when it cannot be read."""
    if spec == "-":
        return _parse(spec, sys.stdin.buffer.read(), input_format or _sniff)
    if spec.startswith(("http://", "https://")):
        return _from_adapter(spec, "http", {"url": spec}, adapters)
    name, sep, address = spec.partition(":")
    if sep and name == "file":
        return _from_file(address, input_format)
    if sep and name in registry.available():
        return _from_adapter(spec, name, options(name, address), adapters)
    return _from_file(spec, input_format)


def _from_file(path: str, input_format: str | None) -> Document:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file (an adapter is written ADAPTER:ADDRESS)") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return _parse(path, data, input_format or formats.guess(Path(path).name) or _sniff)


def _sniff(data: bytes) -> str:
    return "json" if data.lstrip()[:1] == b"{" else "yaml"


def _parse(name: str, data: bytes, fmt: str | Callable[[bytes], str]) -> Document:
    chosen = formats.FORMATS[fmt if isinstance(fmt, str) else fmt(data)]
    if chosen.name == "json":
        return Document(name, _json(name, data), _same)
    try:
        doc = chosen.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{name}: not UTF-8 text") from None
    except formats.FormatError as exc:
        raise ConfigurationError(f"{name}: not valid {chosen.name.upper()}: {exc}") from None
    render: Callable[[dict[str, Any]], dict[str, Any]] = _same
    if chosen.strings_only:
        render = formats.stringify
    return Document(name, doc, render)


def _json(name: str, data: bytes) -> dict[str, Any]:
    """A JSON document as json.loads reads it, without the live-file checks of the file adapter: those guard
    what is stored in history, and nothing here is stored. JSON keys are strings anyway, json.loads refuses
    integers too long to print and nesting past the recursion limit, and the report escapes lone surrogates
    (reconciler.present.diff). Half the time of a 1M-leaf diff went into the checks (docs/benchmarks.md)."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError:
        raise ConfigurationError(f"{name}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{name}: not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigurationError(f"{name}: not valid JSON: nested too deep") from None
    except ValueError:
        raise ConfigurationError(f"{name}: not valid JSON: an integer has too many digits") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{name}: the top level of a JSON document must be an object")
    return doc


def options(adapter: str, address: str) -> dict[str, Any]:
    """An address's source options: a YAML flow mapping, or the main option followed by `,option=value`."""
    if address.lstrip().startswith("{"):
        try:
            found = yamlload.load(address, yamlload.LIVE)
        except yamlload.YamlError as exc:
            raise ConfigurationError(f"{adapter}:{address}: the options are not a YAML mapping: {exc}") from None
        if not isinstance(found, dict):
            raise ConfigurationError(f"{adapter}:{address}: the options are not a YAML mapping")
        return found
    parts = _PAIR.split(address)
    result: dict[str, Any] = {}
    if parts and parts[0] and not _OPTION.match(parts[0]):
        result.update(_main(adapter, parts.pop(0)))
    for part in parts:
        key, _, value = part.partition("=")
        if not _OPTION.match(part):
            raise ConfigurationError(f"{adapter}:{address}: {part!r} is not option=value")
        result[key] = _scalar(value)
    return result


def _main(adapter: str, value: str) -> dict[str, Any]:
    if adapter == "env" and value.isdigit():
        return {"pid": int(value)}
    option = MAIN_OPTION.get(adapter) or getattr(registry.adapter_class(adapter), "address_option", None)
    if option is None:
        raise ConfigurationError(f"{adapter}: name every option as option=value (this adapter has no main option)")
    return {option: value}


def _scalar(value: str) -> Any:
    """`6380` is a number and `true`/`false` booleans, as in a manifest; everything else is a string."""
    if _INTEGER.match(value):
        return int(value)
    return {"true": True, "false": False}.get(value, value)


def _from_adapter(spec: str, name: str, source: dict[str, Any], adapters: Callable[[str], Adapter]) -> Document:
    try:
        target = Target.model_validate(
            {
                "kind": "Target",
                "metadata": {"name": "diff"},
                "spec": {"source": {**source, "adapter": name}, "desired": {}},
            }
        )
        adapter = adapters(name)
        doc = dict(adapter.discover(target).document)
    except ConfigurationError as exc:
        details = "; ".join(f"{p.field}: {p.message}" for p in exc.problems) or str(exc)
        raise ConfigurationError(f"{spec}: {details}") from None
    except ReconcilerError as exc:
        raise ReconcilerError(f"{spec}: {exc}") from None
    except ValueError as exc:  # the options do not make a source (pydantic's ValidationError)
        raise ConfigurationError(f"{spec}: {exc}") from None
    return Document(spec, doc, lambda other: adapter.normalize(target, other))
