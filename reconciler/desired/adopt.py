"""Write a live value into the manifests, keeping the YAML's comments, order and other documents.

The inverse of a fix, for the emergency change that was right and must now be made permanent: into the
target's own manifest (scope `target`), or into the Base the target extends (scope `app`), so that every
environment of the app gets it. `plan` works out the new text of each file touched without writing;
`write` puts it in place (the folder must still load, else the files are put back), `check` loads a copy
of the folder with the new texts instead (for a git commit that leaves the working tree alone).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from reconciler.desired import loader
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, get_in, set_in, to_pointer
from reconciler.errors import ConfigurationError

Scope = Literal["target", "app"]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def adopt(target: Target, path: KeyPath, value: Any, root: Path, scope: Scope = "target") -> list[Path]:
    """Set `path` of the desired state to `value` (MISSING: stop desiring the key) in the manifests and write
    them; returns the files written."""
    files = plan(target, path, value, root, scope)
    write(files, root)
    return list(files)


def plan(target: Target, path: KeyPath, value: Any, root: Path, scope: Scope = "target") -> dict[Path, str]:
    """The new text of each manifest file the adoption touches, nothing written."""
    origin = target.origin
    if origin is None:
        raise ConfigurationError(f"target {target.name} has no manifest file to write to")
    keys = target.list_keys()
    texts: dict[Path, str] = {}
    if scope == "app":
        base = target.spec.extends
        if base is None:
            raise ConfigurationError(f"target {target.name} extends no Base, so it has no app-wide scope to adopt into")
        file, index = _find_base(root, base)
        texts[file] = _edit(file.read_text(encoding="utf-8"), index, target, path, value, keys, own_only=False)
        own = origin.file.read_text(encoding="utf-8")
        if _holds_own(own, origin.document, path, keys):  # the target's own value would hide the Base's
            texts[origin.file] = _edit(texts.get(origin.file, own), origin.document, target, path, MISSING, keys)
        return texts
    texts[origin.file] = _edit(origin.file.read_text(encoding="utf-8"), origin.document, target, path, value, keys)
    return texts


def _find_base(root: Path, name: str) -> tuple[Path, int]:
    yaml = _yaml()
    for file in loader.manifest_files(root):
        text = file.read_text(encoding="utf-8")
        if "Base" not in text:
            continue
        for index, document in enumerate(yaml.load_all(text), start=1):
            is_base = isinstance(document, dict) and document.get("kind") == "Base"
            if is_base and (document.get("metadata") or {}).get("name") == name:
                return file, index
    raise ConfigurationError(f"no manifest defines Base {name!r}")


def _holds_own(text: str, index: int, path: KeyPath, keys: dict[KeyPath, str]) -> bool:
    own = list(_yaml().load_all(text))[index - 1]["spec"].get("desired")
    return own is not None and get_in(own, path, keys) is not MISSING


def _edit(
    text: str, index: int, target: Target, path: KeyPath, value: Any, keys: dict[KeyPath, str], *, own_only: bool = True
) -> str:
    """`text` with `path` of document `index`'s spec.desired set to `value`. MISSING removes the key; for a
    target (`own_only`) whose key comes from its Base, `spec.unset` stops desiring it instead."""
    yaml = _yaml()
    documents = list(yaml.load_all(text))
    spec = documents[index - 1].setdefault("spec", CommentedMap())
    own = spec.get("desired")
    if own is None:
        own = spec["desired"] = CommentedMap()
    current = get_in(own, path, keys)
    if isinstance(current, str) and current.startswith("${"):
        raise ConfigurationError(
            f"{target.name} {to_pointer(path)} is a secret reference ({current}); change the secret instead"
        )
    if value is not MISSING:
        set_in(own, path, value, keys)
    elif current is not MISSING:
        set_in(own, path, MISSING, keys)
    elif own_only:  # the key comes from a base: stop desiring it here
        spec.setdefault("unset", []).append(to_pointer(path))
    buffer = io.StringIO()
    yaml.dump_all(documents, buffer)
    return buffer.getvalue()


def write(files: dict[Path, str], root: Path) -> None:
    """Write the new texts in place; if the folder then does not load, put every file back and raise."""
    originals = {file: file.read_text(encoding="utf-8") for file in files}
    for file, text in files.items():
        _replace(file, text)
    try:
        loader.load(root)
    except ConfigurationError:
        for file, text in originals.items():
            _replace(file, text)
        raise


def check(files: dict[Path, str], root: Path) -> None:
    """Load a copy of the folder with the new texts; raises ConfigurationError where it would not load."""
    with tempfile.TemporaryDirectory(prefix="reconciler-adopt-") as scratch:
        copy = Path(scratch) / "desired"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".*"), symlinks=True)
        for file, text in files.items():
            (copy / file.resolve().relative_to(root.resolve())).write_text(text, encoding="utf-8")
        loader.load(copy)


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
