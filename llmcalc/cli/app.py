"""The Typer app: the command group, its one error path, and the commands (one thin module each:
parse, call analysis, render with report). Bad input -> one `Error:` line, exit 2.

Set LLMCALC_DEBUG=1 to see the traceback behind an error.
"""

import os
import re
import sys
from typing import Annotated, Any

import typer

from llmcalc import __version__
from llmcalc.cli.check import check
from llmcalc.cli.compare import compare
from llmcalc.cli.flops import flops
from llmcalc.cli.memory import memory
from llmcalc.cli.params import params
from llmcalc.cli.plan import plan
from llmcalc.cli.presets import presets
from llmcalc.cli.show import show
from llmcalc.cli.sweep import sweep
from llmcalc.config.reading import shown
from llmcalc.errors import LLMCalcError

try:  # typer >= 0.25 vendors click; older versions use it as a dependency
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors


class OneLineErrors(typer.core.TyperGroup):
    """Bad input is one `Error:` line on stderr, no traceback, whichever layer finds it: llmcalc's
    checks (LLMCalcError: exit 2, or 1 for a run that failed) or typer's own parsing (a wrong type,
    an unknown option, a missing argument: exit 2), which would otherwise print a boxed usage
    block. LLMCALC_DEBUG=1 lets llmcalc's errors raise with their traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except LLMCalcError as exc:
            if os.environ.get("LLMCALC_DEBUG"):
                raise
            typer.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except getattr(click_errors, "NoArgsIsHelpError", ()) as exc:
            exc.show()  # a bare command prints its help
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            message = re.sub(  # a value typed 5,000 characters long is quoted by its start
                r"\S{81,}", lambda m: shown(m.group()), " ".join(exc.format_message().split())
            )
            typer.echo(f"Error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stderr.close()
            sys.exit(0)
        except OSError as exc:  # stdout closed or full (>&-, >/dev/full): a run-time failure
            if exc.errno is None or os.environ.get("LLMCALC_DEBUG"):
                raise
            typer.echo(f"Error: cannot write the output: {exc.strerror}", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="llmcalc",
    help="Exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model."""


for command in (presets, show, params, flops, memory, plan, compare, sweep, check):
    app.command()(command)


def main() -> None:
    if sys.stdout is None:  # started with stdout closed
        print("Error: cannot write the output: stdout is closed", file=sys.stderr)
        sys.exit(1)
    # a terminal or pipe that cannot encode the tables' ·, ×, ² and box lines gets '?' for them
    # rather than a UnicodeEncodeError (JSON and CSV numbers are ASCII anyway)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    app()
