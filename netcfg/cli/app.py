"""The typer app: registers the commands and holds the one error boundary."""

from __future__ import annotations

import signal
import sys
import traceback

import typer
from typer.core import TyperGroup

from netcfg.errors import NetcfgError
from netcfg.text import one_line


class NetcfgGroup(TyperGroup):
    """Turns every user error into `where: error: message` lines and exit code 2."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except NetcfgError as exc:
            report(exc, ctx.meta.get("netcfg_debug", False))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # here: typer's own handler would exit 130 without a word
            raise typer.Exit(interrupted()) from None

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except KeyboardInterrupt:  # outside a command (parsing the command line)
            sys.exit(interrupted())
        except Exception as exc:
            sys.exit(_click_exit(exc))
        sys.exit(result if isinstance(result, int) else 0)


def _click_exit(exc: Exception) -> int:
    """Exit code for click's own exceptions (typer may vendor click, so match by class name)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in names:  # plain `netcfg`: the help, not an error
        typer.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) is not None else exc.format_message())
        return 0
    if "UsageError" in names:
        ctx = getattr(exc, "ctx", None)
        command = f"netcfg {ctx.info_name}" if ctx is not None and ctx.parent is not None else "netcfg"
        # typer words a bad choice "Value error, 'xml' is not one of ...": pydantic's prefix, noise here.
        message = exc.format_message().replace(": Value error, ", ": ").rstrip(".")
        typer.echo(one_line(f"error: {message} (see '{command} --help')"), err=True)  # it quotes the user's text
        return 2
    if "Abort" in names:  # click's word for an end of input or a Ctrl-C at a prompt
        return interrupted()
    if "Exit" in names:
        return int(getattr(exc, "exit_code", 0) or 0)
    raise exc


def interrupted() -> int:
    """Ctrl-C: one line on stderr, exit code 130 (128 + SIGINT, as a shell reports it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C while exiting ends the process at once
    typer.echo("interrupted", err=True)
    return 130


def report(exc: NetcfgError, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc)
    for diagnostic in exc.diagnostics:
        typer.echo(str(diagnostic), err=True)  # one line, escaped and elided (Diagnostic.__str__)


app = typer.Typer(
    cls=NetcfgGroup,
    name="netcfg",
    help="Neural networks described as YAML, built into PyTorch modules.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,  # --install-completion / --show-completion; the enum options complete their choices
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from netcfg.version import __version__

        typer.echo(f"netcfg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),  # fmt: skip
) -> None:
    """Neural networks described as YAML, built into PyTorch modules."""


def _register() -> None:
    from netcfg.cli import (
        bench_cmd,
        build,
        checkpoint_cmds,
        export_cmd,
        inspect_cmd,
        layers,
        load_map,
        run,
        schema,
        train_cmd,
        validate,
    )

    commands = (validate, build, run, inspect_cmd, checkpoint_cmds, load_map, export_cmd, bench_cmd, train_cmd)
    for module in (*commands, layers, schema):
        module.register(app)


_register()


def main() -> None:
    app()
