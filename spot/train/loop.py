"""The training loop: step budget, evaluation cadence, best and task-embedding prompts,
exact resume, NaN guard, progress and metric writers.

Resume order (also in docs/runs.md):
  1. the run's own checkpoint in OUT/checkpoints (the latest complete one) restores the whole
     state: trainable pytree, optimizer state, step, random key, and the data position (the
     input pipeline is deterministic and restarts at that step); --init and the initializer are
     ignored;
  2. otherwise --init FILE: the prompt starts from that file (the transfer path);
  3. otherwise the configured initializer (class_labels, sampled_vocab, uniform, text).

The loop itself is independent of where batches and scores come from: `spot.train.run`
wires a `RunConfig` to a model, the data registry and evaluators, then calls `run_loop`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from spot.config import RunConfig
from spot.errors import ConfigError, NonFiniteError
from spot.fileio import atomic_write_text
from spot.model.prompt import effective_prompt
from spot.train import sharding as shard
from spot.train.metrics_writer import MetricWriter
from spot.train.step import (init_state, jit_train_step, layerwise, make_optimizer,
                             make_train_step)

RESUME_ORDER = ("own checkpoint in OUT/checkpoints", "--init prompt file", "initializer")

# Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"train.steps", "train.progress", "train.log_every", "train.out_dir",
                      "train.eval_every", "train.checkpoint_every", "data.eval_batch_size",
                      "model.attention_impl", "model.remat", "mesh.data", "mesh.model",
                      "mesh.multihost"}

Evaluate = Callable[[dict, dict], tuple[dict[str, Any], float]]


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    final_step: int
    best_step: int | None
    best_score: float | None
    best_metrics: dict[str, Any]
    prompt_paths: dict[str, Path]
    resumed_from: int | None
    seconds: float


def _flat_config(cfg: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_config(v, key + "."))
        else:
            out[key] = v
    return out


_RUN_SECTIONS = frozenset(f.name for f in dataclasses.fields(RunConfig))
# Files that mark a model checkpoint (native, HF, t5x), never a run folder's top level.
_MODEL_FILES = ("params.safetensors", "model.safetensors", "flax_model.msgpack",
                "pytorch_model.bin", "checkpoint", "manifest.ocdbt")


def _not_a_run(out_dir: Path, why: str) -> ConfigError:
    return ConfigError(f"{out_dir} is not a run folder ({why}); choose another --out "
                       f"(train.out_dir)")


def check_resumable(out_dir: Path, config: RunConfig) -> None:
    """Refuse a folder that is not a run (a model checkpoint, say), and a run folder whose
    saved config differs in anything that matters."""
    out_dir = Path(out_dir)
    saved_path = out_dir / "config.json"
    if not saved_path.exists():
        found = [n for n in _MODEL_FILES if (out_dir / n).exists()]
        if found:
            raise _not_a_run(out_dir, f"it holds {found[0]}, a model checkpoint's file")
        return
    try:
        raw = json.loads(saved_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{saved_path} is not valid JSON ({e}), so {out_dir} cannot be "
                          f"resumed; choose another --out (train.out_dir)") from None
    if (not isinstance(raw, dict) or not _RUN_SECTIONS <= set(raw)
            or not all(isinstance(raw[s], dict) for s in _RUN_SECTIONS)):
        what = ("a model checkpoint's config" if isinstance(raw, dict) and
                any(k in raw for k in ("format", "d_model", "emb_dim", "model_type",
                                       "vocab_size")) else "not a spot run config")
        raise _not_a_run(out_dir, f"its config.json is {what}")
    saved = _flat_config(raw)
    now = _flat_config(json.loads(config.to_json()))
    diffs = [k for k in sorted(set(saved) | set(now))
             if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diffs[:5])
        raise ConfigError(
            f"{out_dir} holds a run with a different config ({detail}); resume it with the "
            f"same settings or choose another --out")


def remove_partial_checkpoints(checkpoints: Path, log: Callable[[str], None]) -> list[Path]:
    """Delete the temporary folders of checkpoint saves that never finished (a kill during
    a save leaves `<step>.orbax-checkpoint-tmp-*`); a run folder belongs to one process, so
    none of them can still be in progress. Logs each one; returns what was removed."""
    if not checkpoints.is_dir():
        return []
    removed = []
    for stale in sorted(checkpoints.glob("*.orbax-checkpoint-tmp*")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()
        log(f"removed a partial checkpoint left by an interrupted save: {stale}")
        removed.append(stale)
    return removed


class _Prefetcher:
    """Builds and places the next batches on device in a background thread (order kept)."""

    def __init__(self, it: Iterator[dict], put: Callable[[dict], dict], depth: int = 2):
        self._it, self._put = it, put
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._it:
                item = ("ok", self._put(batch))
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer thread
            self._q.put(("error", e))

    def __next__(self) -> dict:
        kind, value = self._q.get()
        if kind == "error":
            raise value
        if kind == "end":
            raise StopIteration
        return value

    def close(self) -> None:
        # Join the worker: a daemon thread still inside XLA or the tokenizer when the
        # interpreter exits aborts the whole process ("terminate called ...").
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)


def _save_prompt(path: Path, trainable: dict, metadata: dict) -> Path | None:
    """Write the effective prompt (nothing in model-tuning mode, which has no prompt)."""
    from spot.model.prompt_files import save_prompt

    if "prompt" not in trainable:
        return None

    prompt = np.asarray(jax.device_get(effective_prompt(trainable)), np.float32)
    return save_prompt(path, prompt, metadata=metadata)


def _host_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# Jitted train steps of this process, newest last. A study runs dozens of short runs with
# the same frozen model and shapes; reusing the step skips tracing and the compilation-cache
# read (several seconds a run on CPU).
_STEP_CACHE: list[tuple[tuple, Any, tuple]] = []
_STEP_CACHE_SIZE = 8


def _shapes(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


def _jitted_step(module, config: RunConfig, optimizer, mesh, state: dict, frozen: dict,
                 model_tuning: bool, step_wrapper: Callable | None):
    """`jit_train_step` of this run, reused from an earlier run of the same process when
    everything the step closes over is the same: the module object, the optimizer and
    z-loss settings (the optimizer is rebuilt from them), the mesh, and the state's and
    frozen weights' structure, shapes and dtypes. A step wrapper is never cached."""
    def build():
        step_fn = make_train_step(module, optimizer, config.optimizer.z_loss)
        if step_wrapper is not None:
            step_fn = step_wrapper(step_fn)
        return jit_train_step(step_fn, mesh, state, frozen, model_tuning=model_tuning)

    if step_wrapper is not None:
        return build()
    key = (config.optimizer, model_tuning, mesh, _shapes(state), _shapes(frozen))
    for i, (k, held_module, value) in enumerate(_STEP_CACHE):
        if held_module is module and k == key:
            _STEP_CACHE.append(_STEP_CACHE.pop(i))
            return value
    value = build()
    _STEP_CACHE.append((key, module, value))
    del _STEP_CACHE[:-_STEP_CACHE_SIZE]
    return value


def run_loop(config: RunConfig, *, out_dir: Path, module, frozen: dict, initial_trainable:
             Callable[[], dict], batches: Callable[[int], Iterator[dict]],
             evaluate: Evaluate | None, metadata: dict[str, Any],
             step_wrapper: Callable | None = None, log: Callable[[str], None] = print,
             mesh=None) -> RunResult:
    """Train until `config.train.steps`, resuming from `out_dir/checkpoints` if present."""
    import orbax.checkpoint as ocp

    t_cfg = config.train
    started = time.time()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(out_dir, config)
    atomic_write_text(out_dir / "config.json", config.to_json() + "\n")
    remove_partial_checkpoints(out_dir / "checkpoints", log)
    prompts_dir = out_dir / "prompts"
    model_tuning = t_cfg.mode == "model"

    mesh = mesh or shard.make_mesh(config.mesh)
    trainable = initial_trainable()
    optimizer = layerwise(make_optimizer(config.optimizer), trainable)
    state = init_state(trainable, optimizer, t_cfg.seed)
    train_step, state_sh, frozen_sh, batch_sh = _jitted_step(
        module, config, optimizer, mesh, state, frozen, model_tuning, step_wrapper)
    frozen = jax.device_put(frozen, frozen_sh)

    manager = ocp.CheckpointManager(
        out_dir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=t_cfg.keep_checkpoints, create=True))
    resumed_from = manager.latest_step()
    if resumed_from is not None:
        abstract = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sh)
        state = manager.restore(resumed_from, args=ocp.args.StandardRestore(abstract))
        log(f"resumed from {out_dir / 'checkpoints'} at step {resumed_from}")
    else:
        state = jax.device_put(state, state_sh)
    start_step = int(jax.device_get(state["step"]))

    n_train = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state["trainable"]))
    n_frozen = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(frozen))
    log(f"trainable parameters: {n_train:,}; frozen parameters: {n_frozen:,} "
        f"({'model tuning' if model_tuning else 'prompt tuning'}); devices: "
        f"{mesh.devices.size} ({jax.default_backend()})")

    writer = MetricWriter(out_dir)
    writer.truncate_after(start_step)
    best_path = out_dir / "best.json"
    best: dict[str, Any] = {}
    if best_path.exists():
        best = json.loads(best_path.read_text(encoding="utf-8"))
        if best.get("step", 0) > start_step:
            best = {}  # recomputed identically after the resume
    prompt_paths: dict[str, Path] = {}
    meta = {**metadata, "seed": t_cfg.seed, "config": json.loads(config.to_json())}

    def verified(step: int, metrics: dict) -> dict[str, float]:
        values = _host_metrics(metrics)
        if not math.isfinite(values["loss"]):
            last = manager.latest_step()
            where = (f"the last good checkpoint (step {last}) in {out_dir / 'checkpoints'} is "
                     f"intact" if last is not None else "no checkpoint had been written yet")
            raise NonFiniteError(
                f"loss became {values['loss']} at step {step}; training stopped and {where}. "
                f"Lower optimizer.learning_rate, check the data, or resume to retry.")
        return values

    last_eval = "-"
    pending: tuple[int, dict] | None = None
    progress = None
    if t_cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=t_cfg.steps, initial=start_step, unit="step", dynamic_ncols=True,
                        desc=metadata.get("task", "train"))
    it = _Prefetcher(batches(start_step), lambda b: shard.put_batch(b, batch_sh))
    step = start_step
    window: list[dict[str, float]] = []
    try:
        while step < t_cfg.steps:
            batch = next(it)
            state, metrics = train_step(state, frozen, batch)
            step += 1
            # Pull the previous step's metrics now: it has finished, so this never stalls
            # the device pipeline by more than one step.
            if pending is not None:
                window.append(verified(*pending))
            pending = (step, metrics)
            must_sync = (step % t_cfg.eval_every == 0 or step == t_cfg.steps
                         or step % t_cfg.checkpoint_every == 0 or step == t_cfg.embedding_step)
            if must_sync or step % t_cfg.log_every == 0:
                window.append(verified(*pending))
                pending = None
                avg = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                writer.write(step, "train", avg)
                if progress is not None:
                    progress.set_postfix(loss=f"{avg['loss']:.4f}", eval=last_eval,
                                         refresh=False)
                window = []
            if step == t_cfg.embedding_step and not model_tuning:
                prompt_paths["embedding"] = _save_prompt(
                    prompts_dir / f"embedding_step{step}.npy", state["trainable"],
                    {**meta, "kind": "embedding", "step": step})
            if evaluate is not None and (step % t_cfg.eval_every == 0 or step == t_cfg.steps):
                eval_metrics, score = evaluate(state["trainable"], frozen)
                writer.write(step, "eval", {**_flatten_eval(eval_metrics), "score": score})
                last_eval = f"{score:.2f}"
                if not best or score > best["score"]:
                    best = {"step": step, "score": score, "metrics": eval_metrics}
                    saved = _save_prompt(
                        prompts_dir / "best.npy", state["trainable"],
                        {**meta, "kind": "best", "step": step, "score": score,
                         "metrics": eval_metrics})
                    if saved is not None:
                        prompt_paths["best"] = saved
                    atomic_write_text(best_path, json.dumps(best, indent=2, sort_keys=True))
            if step % t_cfg.checkpoint_every == 0 or step == t_cfg.steps:
                manager.save(step, args=ocp.args.StandardSave(state))
            if progress is not None:
                progress.update(1)
        if pending is not None:
            verified(*pending)
        manager.wait_until_finished()
        final = _save_prompt(prompts_dir / "final.npy", state["trainable"],
                             {**meta, "kind": "final", "step": step})
        if final is not None:
            prompt_paths["final"] = final
        if model_tuning:
            _save_model(out_dir / "model", state["trainable"]["params"], metadata)
        if "best" not in prompt_paths and (prompts_dir / "best.npy").exists():
            prompt_paths["best"] = prompts_dir / "best.npy"
        emb = prompts_dir / f"embedding_step{t_cfg.embedding_step}.npy"
        if "embedding" not in prompt_paths and emb.exists():
            prompt_paths["embedding"] = emb
    finally:
        it.close()
        writer.close()
        if progress is not None:
            progress.close()
        manager.wait_until_finished()
        manager.close()
    result = RunResult(out_dir=out_dir, final_step=step, best_step=best.get("step"),
                       best_score=best.get("score"), best_metrics=best.get("metrics", {}),
                       prompt_paths=prompt_paths, resumed_from=resumed_from,
                       seconds=time.time() - started)
    summary = {"final_step": step, "best_step": result.best_step,
               "best_score": result.best_score, "best_metrics": result.best_metrics,
               "prompts": {k: str(v.relative_to(out_dir)) for k, v in prompt_paths.items()},
               "resumed_from": resumed_from, **{k: v for k, v in metadata.items()
                                               if isinstance(v, (str, int, float))}}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    return result


def _flatten_eval(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}/{kk}"] = vv
        else:
            out[k] = v
    return out


def _save_model(path: Path, params: dict, metadata: dict) -> None:
    from spot.model.checkpoints import save_native
    from spot.model.t5 import T5Config

    config = metadata.get("model_config")
    if isinstance(config, dict):
        save_native(path, T5Config.from_dict(config),
                    jax.tree_util.tree_map(lambda x: np.asarray(x), jax.device_get(params)))


def trainable_from_prompt(prompt: np.ndarray, *, reparameterize: bool, hidden: int,
                          seed: int) -> dict:
    trainable: dict[str, Any] = {"prompt": jnp.asarray(prompt, jnp.float32)}
    if reparameterize:
        from spot.model.prompt import init_prompt_encoder

        trainable["prompt_encoder"] = jax.tree_util.tree_map(
            jnp.asarray, init_prompt_encoder(seed, prompt.shape[1], hidden))
    return trainable
