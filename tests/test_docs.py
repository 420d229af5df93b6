"""Docs that are generated from code stay in sync with it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    from spot.clidoc import render

    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == render(), "docs/cli.md is stale: run `python -m spot.clidoc > docs/cli.md`"


def test_every_command_is_documented():
    from spot.cli import cli

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"## `spot {name}`" in text
