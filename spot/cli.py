"""The `spot` command line: a thin click group.

`spot ...` and `python -m spot ...` (spot/__main__.py) both run `main`. Each concern
registers its commands in `spot/commands/<concern>.py` (flags several commands share are
declared once, in `spot/commands/options.py`); those modules import
heavy libraries (jax, tensorflow) inside the command functions so `spot --help` stays fast.
Errors caused by user input (`SpotError`) and file operations the system refuses (an
`OSError` naming its file) print one clear line and exit with status 2.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import click

from spot.errors import SpotError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spot")
def cli() -> None:
    """spot: soft prompt transfer (SPoT) on a frozen T5 1.1, in JAX."""


def _register_commands() -> None:
    import spot.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"spot.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="spot", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SpotError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        # The environment refused a file operation (permissions, a read-only or full disk):
        # one line naming the file, like any other bad input.
        if e.filename is None or e.strerror is None:
            raise
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        name = os.path.basename(os.fsdecode(e.filename))
        if e.filename2 is None and name.startswith(".") and name.endswith(".tmp"):
            where = f"cannot write in {os.path.dirname(os.fsdecode(e.filename))}"  # atomic writes
        click.echo(f"error: {where}: {e.strerror}", err=True)
        sys.exit(2)
    except SystemExit:
        raise
