"""`spot backbone build|info`: the tiny T5 1.1 the project pretrains for the offline default."""

from __future__ import annotations

import dataclasses
import json
import math

import click

_SET_HELP = ("Change one recipe field, e.g. --set reconstruct_steps=800 (repeatable); the "
             "changed recipe is built and cached under its own key.")

# Recipe fields where 0 means "none" (no warm-up phase, no dropout, decoder depth = encoder's).
_MAY_BE_ZERO = ("random_copy_steps", "multitask_steps", "copy_steps", "reconstruct_steps",
                "span_steps", "prefix_lm_steps", "warmup_steps", "dropout_rate", "num_decoder_layers")


def _recipe(seed: int, sets: tuple[str, ...]):
    """The embedded recipe with `--seed` and typed `--set KEY=VALUE` changes."""
    from spot.data.offline.backbone import EMBEDDED_RECIPE, BackboneRecipe
    from spot.errors import ConfigError

    fields = {f.name: f for f in dataclasses.fields(BackboneRecipe)}
    changes: dict = {"seed": seed}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in fields:
            raise ConfigError(f"--set {key}: not a recipe field; known: {', '.join(fields)}")
        kind = type(getattr(BackboneRecipe(), key))
        try:
            changes[key] = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes")
        except ValueError:
            raise ConfigError(f"--set {key}={raw!r}: expected {kind.__name__}") from None
        value = changes[key]
        if kind in (int, float) and (not math.isfinite(value) or value < 0
                                     or (value == 0 and key not in _MAY_BE_ZERO)):
            least = ">= 0" if key in _MAY_BE_ZERO else "> 0"
            raise ConfigError(f"--set {key}={raw!r}: must be a finite number {least}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    return dataclasses.replace(EMBEDDED_RECIPE, **changes)


@click.group("backbone")
def backbone() -> None:
    """The embedded backbone: a tiny T5 1.1 pretrained offline on English prose."""


@backbone.command("build")
@click.option("--force", is_flag=True,
              help="Build from the recipe even if a cached or shipped copy exists (into the "
                   "user cache, which is then used before the shipped copy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--diagnose-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Every N steps, measure how much the decoder reads its encoder (held-out "
                   "nats from the encoder, both objectives) into pretraining.json's history; "
                   "0 = never. Changes neither the weights nor the cache key.")
def build(force: bool, seed: int, sets: tuple[str, ...], diagnose_every: int) -> None:
    """Pretrain it from its recipe (random copy, span corruption, prefix-LM adaptation, then
    the multi-task stage); cached and reused. The default recipe's result ships with spot,
    so this returns at once unless --force or --set asks for another build."""
    from spot.train.pretrain import build_backbone

    path = build_backbone(_recipe(seed, sets), force=force, diagnose_every=diagnose_every,
                          log=lambda s: click.echo(s, err=True))
    click.echo(str(path))


@backbone.command("info")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="The recipe changes it was built with (see `build --set`).")
@click.option("--diagnose", is_flag=True,
              help="Also measure how much the decoder reads its encoder: held-out perplexity "
                   "with each example's own input and with another example's input.")
def info(seed: int, sets: tuple[str, ...], diagnose: bool) -> None:
    """Where the backbone is (the user cache, else the copy shipped with spot) and how it was
    made (held-out perplexity and, after a multi-task stage, its scores included)."""
    from spot.data.offline.backbone import backbone_path

    path = backbone_path(_recipe(seed, sets))
    report = json.loads((path / "pretraining.json").read_text(encoding="utf-8"))
    report.pop("history", None)
    result = {"path": str(path), **report}
    if diagnose:
        from spot.train.pretrain import diagnose as run_diagnosis

        result["diagnosis"] = run_diagnosis(path)["heldout"]
    click.echo(json.dumps(result, indent=2))


def register(cli: click.Group) -> None:
    cli.add_command(backbone)
