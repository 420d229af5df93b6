"""`spot convert SRC OUT`: any supported checkpoint -> spot's native format."""

from __future__ import annotations

import click


@click.command("convert")
@click.argument("src")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--config-json", type=click.Path(dir_okay=False),
              help="T5 config overriding the checkpoint's (spot T5Config fields or an HF "
                   "config.json); needed when it cannot be read or inferred.")
@click.option("--dtype", type=click.Choice(["keep", "float32", "bfloat16"]), default="keep",
              show_default=True, help="Store parameters in this dtype.")
@click.option("--overwrite", is_flag=True, help="Replace an existing native checkpoint at OUT.")
def convert(src: str, out: str, config_json: str | None, dtype: str, overwrite: bool) -> None:
    """Convert SRC (HF folder or hub id, t5x folder or gs:// path, native) into OUT."""
    from pathlib import Path

    import numpy as np

    from spot.errors import CheckpointError
    from spot.model.checkpoints import flatten_params, load_checkpoint, read_config_file, save_native, unflatten_params

    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise CheckpointError(f"{out_path}: already exists (pass --overwrite to replace a "
                              "spot checkpoint there)")
    config = read_config_file(config_json) if config_json else None
    cfg, params = load_checkpoint(src, config=config)
    if dtype != "keep":
        import ml_dtypes

        target = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
        params = unflatten_params({k: v.astype(target) for k, v in flatten_params(params).items()})
    flat = flatten_params(params)
    save_native(out_path, cfg, params, metadata={"converted_from": src})
    n = sum(int(v.size) for v in flat.values())
    dtypes = sorted({v.dtype.name for v in flat.values()})
    click.echo(f"wrote {out_path}: {len(flat)} arrays, {n:,} parameters ({', '.join(dtypes)}), "
               f"emb {cfg.emb_dim}, {cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers")


def register(cli: click.Group) -> None:
    cli.add_command(convert)
