"""`spot backbone build|info`: the tiny T5 1.1 the project pretrains for the offline default."""

from __future__ import annotations

import json

import click


@click.group("backbone")
def backbone() -> None:
    """The embedded backbone: a tiny T5 1.1 pretrained offline on English prose."""


@backbone.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if a cached copy exists.")
@click.option("--seed", type=int, default=0, show_default=True)
def build(force: bool, seed: int) -> None:
    """Pretrain it (span corruption, then prefix-LM adaptation); cached and reused."""
    from spot.data.offline.backbone import BackboneRecipe, build_backbone

    path = build_backbone(BackboneRecipe(seed=seed), force=force,
                          log=lambda s: click.echo(s, err=True))
    click.echo(str(path))


@backbone.command("info")
def info() -> None:
    """Where the cached backbone is and how it was made (held-out perplexity included)."""
    from spot.data.offline.backbone import backbone_path

    path = backbone_path()
    report = json.loads((path / "pretraining.json").read_text(encoding="utf-8"))
    report.pop("history", None)
    click.echo(json.dumps({"path": str(path), **report}, indent=2))


def register(cli: click.Group) -> None:
    cli.add_command(backbone)
