"""`spot prompt export|info`: move prompts between formats and inspect them."""

from __future__ import annotations

import json

import click


@click.group("prompt")
def prompt() -> None:
    """Prompt files: export to npy/safetensors/PEFT, inspect."""


@prompt.command("export")
@click.argument("prompt_path", metavar="PROMPT")
@click.option("--format", "fmt", type=click.Choice(["npy", "safetensors", "peft"]),
              required=True, help="Output format.")
@click.option("--out", required=True, type=click.Path(), help="Output file (npy, safetensors) "
              "or folder (peft).")
@click.option("--base-model", help="HF folder or hub id the PEFT adapter applies to "
              "(its config.json gives num_layers, heads and the embedding width).")
def export(prompt_path: str, fmt: str, out: str, base_model: str | None) -> None:
    """Export PROMPT (any readable prompt file or folder) to --format at --out."""
    from pathlib import Path

    from spot.errors import ConfigError, PromptError
    from spot.model.prompt_files import export_peft, load_prompt, load_prompt_metadata, save_prompt

    arr = load_prompt(prompt_path)
    if fmt == "peft":
        if not base_model:
            raise ConfigError("--format peft needs --base-model (HF folder or hub id)")
        from spot.model.checkpoints_hf import config_from_hf, resolve_hf_config, scales_tied_output

        hf_cfg = resolve_hf_config(base_model)
        config = config_from_hf(hf_cfg, logits_via_embedding=scales_tied_output(hf_cfg, False),
                                source=f"{base_model} config.json")
        try:
            path = export_peft(arr, out, base_model=base_model, config=config)
        except PromptError as e:
            raise PromptError(f"{e} (base model {base_model})") from None
    else:
        suffix = "." + fmt
        path = Path(out)
        if path.suffix == "":
            path = path.with_name(path.name + suffix)
        if path.suffix != suffix:
            raise ConfigError(f"--out {out} ends in {path.suffix} but --format is {fmt}")
        from spot.fileio import same_file

        if same_file(path, prompt_path):
            raise ConfigError(f"--out {out} is the prompt being exported; write to another file")
        meta = load_prompt_metadata(prompt_path).get("metadata", {})
        path = save_prompt(path, arr, metadata={**meta, "exported_from": str(prompt_path)})
    click.echo(f"wrote {path} ({arr.shape[0]} x {arr.shape[1]})")


@prompt.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(path: str, as_json: bool) -> None:
    """Shape, dtype, per-token L2 norms, mean/std and metadata of a prompt."""
    from spot.model.prompt_files import load_prompt, load_prompt_metadata, prompt_stats, read_prompt_raw

    stored_dtype = str(read_prompt_raw(path).dtype)
    arr = load_prompt(path)
    report = {"path": path, **prompt_stats(arr), "dtype": stored_dtype,
              "metadata": load_prompt_metadata(path)}
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
        return
    click.echo(f"{path}")
    click.echo(f"  shape        {report['shape'][0]} x {report['shape'][1]} ({stored_dtype})")
    click.echo(f"  token norm   mean {report['token_norm_mean']:.4g}  min "
               f"{report['token_norm_min']:.4g}  max {report['token_norm_max']:.4g}")
    click.echo(f"  values       mean {report['mean']:.4g}  std {report['std']:.4g}")
    if report["metadata"]:
        click.echo("  metadata     " + json.dumps(report["metadata"], sort_keys=True, default=str))


def register(cli: click.Group) -> None:
    cli.add_command(prompt)
