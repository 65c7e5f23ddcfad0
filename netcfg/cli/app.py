"""The typer app: registers the commands and holds the one error boundary."""

from __future__ import annotations

import sys
import traceback

import click
import typer
from typer.core import TyperGroup

from netcfg.errors import NetcfgError


class NetcfgGroup(TyperGroup):
    """Turns every user error into `where: error: message` lines and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NetcfgError as exc:
            report(exc, ctx.meta.get("netcfg_debug", False))
            raise typer.Exit(2) from None

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            command = f"netcfg {exc.ctx.info_name} " if exc.ctx and exc.ctx.parent else "netcfg "
            typer.echo(f"error: {exc.format_message()} (see '{command.strip()} --help')", err=True)
            sys.exit(2)
        except click.Abort:
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def report(exc: NetcfgError, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc)
    for diagnostic in exc.diagnostics:
        typer.echo(str(diagnostic), err=True)


app = typer.Typer(
    cls=NetcfgGroup,
    name="netcfg",
    help="Neural networks described as YAML, built into PyTorch modules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from netcfg.cli import build, layers, run, schema, validate

    for module in (validate, build, run, layers, schema):
        module.register(app)


_register()


def main() -> None:
    app()
