"""Render the CLI reference (docs/cli.md) from the click commands themselves.

`python -m spot.clidoc > docs/cli.md` regenerates it; a test fails when the file is stale.
"""

from __future__ import annotations

import click


def _walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], [*path, name])


def render() -> str:
    from spot.cli import cli

    lines = ["# CLI reference", "",
             "Generated from the commands by `python -m spot.clidoc > docs/cli.md`; "
             "`tests/test_docs.py` keeps it in sync.", ""]
    for path, cmd in _walk(cli, ["spot"]):
        name = " ".join(path)
        # The group's context settings reach every subcommand when the CLI runs; a bare
        # Context would not see them, and click caches each command's help option, so
        # the help option names are given explicitly (the same output in any process).
        ctx = click.Context(cmd, info_name=name, terminal_width=100, max_content_width=100,
                            help_option_names=list(cli.context_settings["help_option_names"]))
        lines += [f"## `{name}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
