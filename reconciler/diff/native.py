"""Build the compiled walk: `python -m reconciler.diff.native` (`make install` runs it).

mypyc compiles a copy of walk.py, stamped with the SHA-256 of its source, into
reconciler/diff/_walk_native*.so, next to the source. reconciler.diff.compare uses that build only while
walk.py still has the digest it was built from, so an edited walk.py is never shadowed by a stale build.
mypyc comes with mypy (a dev dependency) and needs a C compiler and Python's headers. Without them this
says why and exits 0: the plain-Python walk gives the same results, about half as fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "reconciler.diff"
NAME = "_walk_native"  # the compiled module: reconciler.diff._walk_native


def build() -> str | None:
    """Build the compiled walk in place; returns why not, or None once built."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler (cc or gcc) on PATH"
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (it comes with mypy: pip install -e '.[dev]')"
    source = (HERE / "walk.py").read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    for old in HERE.glob(f"{NAME}*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as work:
        # mypyc builds in the current directory, and puts the modules in their package's folder below it;
        # its setup.py would also read (and judge) a pyproject.toml found there. So it runs in a scratch
        # folder holding a copy of the package (type-checked from there, not from wherever it is installed),
        # the stamped copy of walk.py, and the one mypy setting the type check needs.
        shutil.copytree(HERE.parent, Path(work, HERE.parent.name), ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        built = Path(work, *PACKAGE.split("."))
        (built / f"{NAME}.py").write_bytes(source + f'\n\nSOURCE_DIGEST = "{digest}"\n'.encode())
        Path(work, "mypy.ini").write_text("[mypy]\nplugins = pydantic.mypy\n")
        result = subprocess.run(
            [sys.executable, "-m", "mypyc", str(Path(*PACKAGE.split("."), f"{NAME}.py"))],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            return f"mypyc failed:\n{tail}"
        for module in built.glob(f"{NAME}*.so"):
            shutil.copy2(module, HERE / module.name)
    return None


def main() -> int:
    why = build()
    if why is None:
        print(f"compiled walk built: {', '.join(sorted(p.name for p in HERE.glob(NAME + '*')))}")
    else:
        print(f"compiled walk not built ({why}); compare runs as plain Python", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
