"""Write a live value into a target's manifest, keeping the YAML's comments, order and other documents.

The inverse of a fix, for the emergency change that was right and must now be made permanent. The edited
folder must still load; if it does not, the file is put back as it was.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from reconciler.desired import loader
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, get_in, set_in, to_pointer
from reconciler.errors import ConfigurationError


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def adopt(target: Target, path: KeyPath, value: Any, root: Path) -> Path:
    """Set `path` of `target`'s desired state to `value` in its manifest (MISSING: stop desiring the key);
    returns the file written."""
    origin = target.origin
    if origin is None:
        raise ConfigurationError(f"target {target.name} has no manifest file to write to")
    pointer = to_pointer(path)
    original = origin.file.read_text(encoding="utf-8")
    yaml = _yaml()
    documents = list(yaml.load_all(original))
    document = documents[origin.document - 1]
    spec = document["spec"]
    own = spec.get("desired")
    if own is None:
        own = spec["desired"] = CommentedMap()
    keys = target.list_keys()
    current = get_in(own, path, keys)
    if isinstance(current, str) and current.startswith("${"):
        raise ConfigurationError(
            f"{target.name} {pointer} is a secret reference ({current}); change the secret instead"
        )
    if value is not MISSING:
        set_in(own, path, value, keys)
    elif current is not MISSING:
        set_in(own, path, MISSING, keys)
    else:  # the key comes from a base: stop desiring it here
        spec.setdefault("unset", []).append(pointer)
    buffer = io.StringIO()
    yaml.dump_all(documents, buffer)
    _replace(origin.file, buffer.getvalue())
    try:
        loader.load(root)
    except ConfigurationError:
        _replace(origin.file, original)
        raise
    return origin.file


def _replace(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".adopt-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
        os.replace(name, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
