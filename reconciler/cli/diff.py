"""`reconciler diff A B`: compare any two sources without manifests (see reconciler.cli.inputs)."""

from __future__ import annotations

import dataclasses
import gc
from typing import Annotated

import typer

from reconciler.adapters import formats
from reconciler.cli import FormatOpt, app, check_format, fail, inputs, load
from reconciler.cli.parity import threshold_option
from reconciler.diff import configs
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.present import diff as diff_views
from reconciler.runtime import compose

Repeated = list[str] | None


def pairs(values: Repeated, option: str) -> dict[str, str]:
    """`PATH=VALUE` options as a mapping; the last `=` splits, so a pointer may hold one."""
    result = {}
    for value in values or []:
        path, sep, what = value.rpartition("=")
        if not sep or not path or not what:
            raise typer.BadParameter(f"{value!r} is not PATH=VALUE", param_hint=option)
        result[path] = what
    return result


@app.command("diff")
def diff_cmd(
    a: Annotated[str, typer.Argument(help="A file, - for stdin, an http(s) URL, or ADAPTER:ADDRESS.")],
    b: Annotated[str, typer.Argument(help="The same kinds as A.")],
    ignore: Annotated[Repeated, typer.Option("--ignore", help="A JSON-Pointer glob left out (repeatable).")] = None,
    ignore_key: Annotated[
        Repeated, typer.Option("--ignore-key", help="A key name left out at any depth, literally (repeatable).")
    ] = None,
    secret: Annotated[
        Repeated, typer.Option("--secret", help="A glob compared by keyed hash, never shown (repeatable).")
    ] = None,
    normalize: Annotated[
        Repeated,
        typer.Option("--normalize", help="GLOB=AS, AS one of bytes, duration, bool, number, lower (repeatable)."),
    ] = None,
    list_key: Annotated[
        Repeated, typer.Option("--list-key", help="POINTER=KEY: compare that list's items by KEY (repeatable).")
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option(
            callback=lambda v: v if v is None else threshold_option(v),
            help="Exit 2 only when the drift is above this: a fraction (0.1) or a percentage (7.2%).",
        ),
    ] = None,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format", help="yaml, json, toml, ini or env: for stdin, and files without a known extension."
        ),
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Compare two configuration sources, no manifests needed: types strict, paths as JSON Pointers, null
    apart from missing. A strings-only source (.env, INI, env, Redis, etcd...) has the other side's values
    rendered as strings first.

    Exit code 0 when equal, 2 when they differ (with --threshold: when the drift is above it), 1 on error.
    """
    check_format(fmt)
    if input_format is not None and input_format not in formats.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(formats.FORMATS)}", param_hint="--input-format")
    options = configs.DiffOptions(
        ignore=ignore or (),
        ignore_keys=ignore_key or (),
        secrets=secret or (),
        normalize=pairs(normalize, "--normalize"),
        list_keys=pairs(list_key, "--list-key"),
        threshold=threshold,
    )
    result = _compare(a, b, options, input_format)
    typer.echo(diff_views.render_diff(result, fmt))
    raise typer.Exit(2 if result.significant else 0)


def _compare(a: str, b: str, options: configs.DiffOptions, input_format: str | None) -> configs.ConfigDiff:
    """Read both sources and compare them; a failure exits 1 with the error."""
    try:
        settings = load()
        options = dataclasses.replace(options, hmac_key=settings.hmac_key())
        adapters = compose.Adapters(settings)
        left = inputs.read(a, adapters, input_format)
        right = inputs.read(b, adapters, input_format)
        # Both documents live until the end: the collector need not walk their millions of objects again
        # each time the comparison allocates (a third of a 1M-leaf diff's time went to that).
        gc.freeze()
        result = configs.compare_configs(_like(left, right), _like(right, left), options)
    except ReconcilerError as exc:
        raise fail(exc) from None
    except RecursionError:
        raise fail(ConfigurationError(f"{a} or {b} is nested too deep to compare")) from None
    finally:
        gc.unfreeze()
    return configs.ConfigDiff(result.differences, result.total_leaves, result.differing_leaves, result.threshold, a, b)


def _like(doc: inputs.Document, other: inputs.Document) -> dict[str, object]:
    """`doc` rendered the way `other` holds values, so that "30" in Redis equals 30 in a YAML file."""
    try:
        return other.render_like(doc.doc)
    except ConfigurationError as exc:
        details = "; ".join(p.message for p in exc.problems) or str(exc)
        raise ConfigurationError(f"{doc.name} cannot be compared with {other.name}: {details}") from None
