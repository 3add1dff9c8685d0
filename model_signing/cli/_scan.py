"""CLI: ``scan`` -- static threat scan of a model file or directory (nothing is loaded or executed)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from model_signing.cli import _options as opt


class FailOn(StrEnum):
    """``--fail-on``."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


def register(app: typer.Typer) -> None:
    """Add the ``scan`` command to the app."""

    @app.command()
    def scan(  # noqa: PLR0917 - one parameter per CLI option
        path: opt.ModelPath,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the report as a JSON object on stdout.")
        ] = False,
        fail_on: Annotated[
            FailOn | None,
            typer.Option("--fail-on", help="Exit 4 if any finding is at or above this severity (default: medium, "
                                           "or the config file's fail_on)."),
        ] = None,
        allow_global: Annotated[
            list[str] | None,
            typer.Option("--allow-global", metavar="MODULE.NAME",
                         help="Accept this pickle global (or MODULE.* for a whole module); repeatable. Known "
                              "code-execution gadgets stay findings."),
        ] = None,
        config_file: Annotated[
            str | None,
            typer.Option("--config", metavar="FILE",
                         help="TOML config file: allow_globals = [...] and fail_on = \"...\" in its scan table."),
        ] = None,
        allow_symlinks: opt.AllowSymlinks = False,
    ) -> None:
        """Scan a model for content that runs code when loaded (pickles, Keras Lambdas, TF file ops, ...).

        Exit 0: nothing at or above the threshold; 4: unsafe content found; 1: bad input.
        """
        from model_signing import scan as scanning
        from model_signing.cli import _report
        from model_signing.errors import InputError, UnsafeModelError

        _report.begin("scan", model_path=path, as_json=as_json)
        base = scanning.load_config(config_file) if config_file is not None else None
        try:
            config = scanning.make_config(
                allow_globals=allow_global or (),
                threshold=fail_on.value if fail_on is not None else (base.threshold if base else "medium"),
                base=base,
            )
        except InputError as exc:
            raise InputError(f"--allow-global: {exc}") from None
        report = scanning.scan_path(path, config=config, follow_symlinks=allow_symlinks)
        threshold = config.threshold
        if as_json:
            import json

            _report.out(json.dumps(report.to_json(threshold), indent=2, ensure_ascii=False))
        else:
            lines = [
                f"{f.severity.label:<8} {_report.printable(f.file)}"
                f"{'' if f.offset is None else f' @{f.offset}'}: {f.kind}: {_report.printable(f.detail)}"
                for f in sorted(report.findings, key=lambda f: (-f.severity, f.file, f.offset or 0))
            ]
            at_or_above = sum(1 for f in report.findings if f.severity >= threshold)
            summary = (
                f"scanned {path}: {report.files_scanned} file{'s' if report.files_scanned != 1 else ''}, "
                f"{len(report.findings)} finding{'s' if len(report.findings) != 1 else ''}"
                f" ({at_or_above} at or above {threshold.label})"
            )
            _report.out("\n".join([*lines, summary]))
        if report.unsafe(threshold):
            raise UnsafeModelError([f for f in report.findings if f.severity >= threshold], threshold.label)
