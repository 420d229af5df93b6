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
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spot.config import RunConfig, TrainConfig, from_dict
from spot.errors import ConfigError, NonFiniteError
from spot.fileio import atomic_write_text
from spot.model.prompt import effective_prompt
from spot.train import sharding as shard
from spot.train.metrics_writer import MetricWriter
from spot.train.step import init_state, jit_train_step, layerwise, make_optimizer, make_train_step
from spot.train.step_cache import StepCache, tree_signature

RESUME_ORDER = ("own checkpoint in OUT/checkpoints", "--init prompt file", "initializer")

# Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"train.steps", "train.progress", "train.log_every", "train.out_dir",
                      "train.eval_every", "train.checkpoint_every", "data.eval_batch_size",
                      "model.attention_impl", "model.remat", "train.microbatches", "mesh.data",
                      "mesh.model", "mesh.multihost", "train.eval_at_start"}

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
    # The evaluation of the initial prompt (`train.eval_at_start`; None when not asked for).
    initial_score: float | None = None


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


def _resolved_dict(raw: dict) -> dict:
    """A saved config as it resolves today (a folder written before a default became
    mode-dependent compares by what its run used); as saved when it no longer loads."""
    try:
        return json.loads(from_dict(raw).resolve().to_json())
    except ConfigError:
        return raw


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
    saved = _flat_config(_resolved_dict(raw))
    now = _flat_config(json.loads(config.resolve().to_json()))
    diffs = [k for k in sorted(set(saved) | set(now))
             if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diffs[:5])
        raise ConfigError(
            f"{out_dir} holds a run with a different config ({detail}); resume it with the "
            f"same settings or choose another --out")


_INIT_RECORD = "init_prompt.json"


def _init_file_digest(config: RunConfig) -> str | None:
    """sha256 of the file a `prompt.init = file` run starts from; None for any other init or
    a file that is not there (the prompt loader then says so)."""
    import hashlib

    if config.prompt.init != "file" or not config.prompt.init_path:
        return None
    path = Path(config.prompt.init_path)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_init_file_unchanged(out_dir: Path, config: RunConfig, digest: str | None) -> None:
    """Refuse to resume a run whose initial prompt file now holds another prompt (`digest`:
    the file's sha256 now, from `_init_file_digest`): the saved config names the file, not
    its content, so a rewritten file would otherwise be resumed (or a finished run
    returned) as if it were the one the run started from."""
    record = Path(out_dir) / _INIT_RECORD
    if digest is None or not record.is_file():
        return
    try:
        saved = json.loads(record.read_text(encoding="utf-8")).get("sha256")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        saved = None
    if saved != digest:
        raise ConfigError(
            f"{out_dir} holds a run started from another initial prompt: "
            f"{config.prompt.init_path} has changed since (sha256 {str(saved)[:12]} -> "
            f"{digest[:12]}); choose another --out (train.out_dir) or restore the file")


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


@dataclasses.dataclass(frozen=True)
class RunPieces:
    """What a run trains and on what: everything `run_loop` needs besides the config.

    `initial_trainable` builds steps 2-3 of the resume order (called once, even when the
    run resumes: the restore needs its structure); `batches(start_step)` yields the
    deterministic input stream from that step; `step_wrapper` wraps the step function
    before it is jitted (tests plant failures with it; a wrapped step is never cached).
    """

    out_dir: Path | str
    module: Any
    frozen: dict
    initial_trainable: Callable[[], dict]
    batches: Callable[[int], Iterator[dict]]
    evaluate: Evaluate | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    step_wrapper: Callable | None = None


def _jitted_step(pieces: RunPieces, config: RunConfig, optimizer, mesh, state: dict,
                 step_cache: StepCache | None):
    """`jit_train_step` of this run, from `step_cache` when everything the step closes over
    is the same: the module object, the optimizer and z-loss settings (the optimizer is
    rebuilt from them), the mesh, and the state's and frozen weights' structure, shapes and
    dtypes. A step wrapper is never cached."""
    model_tuning = config.train.mode == "model"

    def build():
        step_fn = make_train_step(pieces.module, optimizer, config.optimizer.z_loss,
                                  config.train.microbatches)
        if pieces.step_wrapper is not None:
            step_fn = pieces.step_wrapper(step_fn)
        return jit_train_step(step_fn, mesh, state, pieces.frozen, model_tuning=model_tuning)

    if pieces.step_wrapper is not None or step_cache is None:
        return build()
    key = (config.optimizer, config.train.microbatches, model_tuning, mesh, tree_signature(state),
           tree_signature(pieces.frozen))
    return step_cache.get(pieces.module, key, build)


@dataclasses.dataclass
class Started:
    """A run ready to step: its compiled step, frozen weights on device, checkpoint
    manager, and where it starts (`resumed_from` is None for a fresh run)."""

    train_step: Callable
    frozen: dict
    batch_sharding: Any
    manager: Any
    resumed_from: int | None
    start_step: int


def prepare_run_folder(out_dir: Path | str, config: RunConfig,
                       log: Callable[[str], None]) -> Path:
    """Make (or check, for a resume) the run folder, write its config, drop partial saves."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(out_dir, config)
    digest = _init_file_digest(config)
    check_init_file_unchanged(out_dir, config, digest)
    atomic_write_text(out_dir / "config.json", config.to_json() + "\n")
    if digest is not None and not (out_dir / _INIT_RECORD).is_file():
        atomic_write_text(out_dir / _INIT_RECORD, json.dumps(
            {"path": config.prompt.init_path, "sha256": digest}, indent=2) + "\n")
    remove_partial_checkpoints(out_dir / "checkpoints", log)
    return out_dir


def restore_or_init(config: RunConfig, pieces: RunPieces, mesh, *,
                    log: Callable[[str], None], step_cache: StepCache | None = None
                    ) -> tuple[dict, Started]:
    """Step 1 of the resume order, else steps 2-3: the state on device and the run's
    pieces. The initial state is built either way: the restore takes its structure."""
    import orbax.checkpoint as ocp

    out_dir = Path(pieces.out_dir).resolve()
    trainable = pieces.initial_trainable()
    optimizer = layerwise(make_optimizer(config.optimizer, config.train.mode), trainable)
    state = init_state(trainable, optimizer, config.train.seed)
    train_step, state_sh, frozen_sh, batch_sh = _jitted_step(
        pieces, config, optimizer, mesh, state, step_cache)
    frozen = jax.device_put(pieces.frozen, frozen_sh)
    manager = ocp.CheckpointManager(
        out_dir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=config.train.keep_checkpoints,
                                             create=True))
    resumed_from = manager.latest_step()
    if resumed_from is not None:
        abstract = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sh)
        state = manager.restore(resumed_from, args=ocp.args.StandardRestore(abstract))
        log(f"resumed from {out_dir / 'checkpoints'} at step {resumed_from}")
    else:
        state = jax.device_put(state, state_sh)
    return state, Started(train_step=train_step, frozen=frozen, batch_sharding=batch_sh,
                          manager=manager, resumed_from=resumed_from,
                          start_step=int(jax.device_get(state["step"])))


def _log_sizes(state: dict, frozen: dict, model_tuning: bool, mesh,
               log: Callable[[str], None]) -> None:
    n_train = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state["trainable"]))
    n_frozen = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(frozen))
    log(f"trainable parameters: {n_train:,}; frozen parameters: {n_frozen:,} "
        f"({'model tuning' if model_tuning else 'prompt tuning'}); devices: "
        f"{mesh.devices.size} ({jax.default_backend()})")


class BestTracker:
    """The best evaluation so far (OUT/best.json) and its prompt (OUT/prompts/best.npy).

    On a resume, a best recorded after the restored step is dropped: the resumed run
    recomputes it identically."""

    def __init__(self, out_dir: Path, start_step: int):
        self.path = out_dir / "best.json"
        self.prompt_path = out_dir / "prompts" / "best.npy"
        self.best: dict[str, Any] = {}
        if self.path.exists():
            best = json.loads(self.path.read_text(encoding="utf-8"))
            if best.get("step", 0) <= start_step:
                self.best = best

    @property
    def step(self) -> int | None:
        return self.best.get("step")

    @property
    def score(self) -> float | None:
        return self.best.get("score")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.best.get("metrics", {})

    def offer(self, step: int, score: float, metrics: dict[str, Any], trainable: dict,
              meta: dict[str, Any]) -> tuple[bool, Path | None]:
        """Record `score` if it beats the best so far (strictly; the first always does);
        returns whether it did and the prompt file written (None in model tuning)."""
        if self.best and not score > self.best["score"]:
            return False, None
        self.best = {"step": step, "score": score, "metrics": metrics}
        saved = _save_prompt(self.prompt_path, trainable,
                             {**meta, "kind": "best", "step": step, "score": score,
                              "metrics": metrics})
        atomic_write_text(self.path, json.dumps(self.best, indent=2, sort_keys=True))
        return True, saved


@dataclasses.dataclass
class RunOutputs:
    """Where a run writes besides its checkpoints, and the prompt files written so far."""

    out_dir: Path
    writer: MetricWriter
    best: BestTracker
    meta: dict[str, Any]  # metadata every saved prompt carries
    prompt_paths: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def prompts_dir(self) -> Path:
        return self.out_dir / "prompts"

    @classmethod
    def open(cls, out_dir: Path, config: RunConfig, metadata: Mapping[str, Any],
             start_step: int) -> "RunOutputs":
        writer = MetricWriter(out_dir)
        writer.truncate_after(start_step)
        meta = {**metadata, "seed": config.train.seed, "config": json.loads(config.to_json())}
        return cls(out_dir=out_dir, writer=writer, best=BestTracker(out_dir, start_step),
                   meta=meta)


class PeriodicHooks:
    """What follows a train step on the `TrainConfig` schedule: the task-embedding prompt
    at `embedding_step` (prompt tuning only), evaluation and the best prompt every
    `eval_every` steps and at the end, a checkpoint every `checkpoint_every` and at the end."""

    def __init__(self, t_cfg: TrainConfig, outputs: RunOutputs, evaluate: Evaluate | None,
                 manager):
        self.t, self.outputs, self.evaluate, self.manager = t_cfg, outputs, evaluate, manager
        self.model_tuning = t_cfg.mode == "model"
        self.last_eval = "-"  # shown beside the loss on the progress bar

    def must_sync(self, step: int) -> bool:
        """Whether a hook runs after `step` (the loss is then checked first)."""
        t = self.t
        return (step % t.eval_every == 0 or step == t.steps or step % t.checkpoint_every == 0
                or step == t.embedding_step)

    def after_step(self, step: int, state: dict, frozen: dict) -> None:
        import orbax.checkpoint as ocp

        t, out = self.t, self.outputs
        if step == t.embedding_step and not self.model_tuning:
            out.prompt_paths["embedding"] = _save_prompt(
                out.prompts_dir / f"embedding_step{step}.npy", state["trainable"],
                {**out.meta, "kind": "embedding", "step": step})
        if self.evaluate is not None and (step % t.eval_every == 0 or step == t.steps):
            self._evaluate(step, state, frozen)
        if step % t.checkpoint_every == 0 or step == t.steps:
            self.manager.save(step, args=ocp.args.StandardSave(state))

    def _evaluate(self, step: int, state: dict, frozen: dict) -> None:
        out = self.outputs
        eval_metrics, score = self.evaluate(state["trainable"], frozen)
        out.writer.write(step, "eval", {**_flatten_eval(eval_metrics), "score": score})
        self.last_eval = f"{score:.2f}"
        _, saved = out.best.offer(step, score, eval_metrics, state["trainable"], out.meta)
        if saved is not None:
            out.prompt_paths["best"] = saved


class LossLog:
    """Train metrics, pulled from the device one step late (the step has finished, so this
    never stalls the pipeline by more than a step), averaged into a `train` record at each
    logged or synced step; a non-finite loss raises `NonFiniteError`."""

    def __init__(self, writer: MetricWriter, manager, checkpoints: Path, progress=None):
        self.writer, self.manager, self.checkpoints = writer, manager, checkpoints
        self.progress = progress
        self._pending: tuple[int, dict] | None = None
        self._window: list[dict[str, float]] = []

    def _verified(self, step: int, metrics: dict) -> dict[str, float]:
        values = _host_metrics(metrics)
        if not math.isfinite(values["loss"]):
            last = self.manager.latest_step()
            where = (f"the last good checkpoint (step {last}) in {self.checkpoints} is "
                     f"intact" if last is not None else "no checkpoint had been written yet")
            raise NonFiniteError(
                f"loss became {values['loss']} at step {step}; training stopped and {where}. "
                f"Lower optimizer.learning_rate, check the data, or resume to retry.")
        return values

    def add(self, step: int, metrics: dict, *, write: bool, last_eval: str = "-") -> None:
        """Take `step`'s device metrics; check and record the window when `write`."""
        if self._pending is not None:
            self._window.append(self._verified(*self._pending))
        self._pending = (step, metrics)
        if not write:
            return
        self._window.append(self._verified(*self._pending))
        self._pending = None
        window = self._window
        avg = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        self.writer.write(step, "train", avg)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{avg['loss']:.4f}", eval=last_eval, refresh=False)
        self._window = []

    def finish(self) -> None:
        """Check the last step's loss (not written unless it was a logged step)."""
        if self._pending is not None:
            self._verified(*self._pending)
            self._pending = None


def finalize(outputs: RunOutputs, state: dict, step: int, *, config: RunConfig,
             metadata: Mapping[str, Any]) -> None:
    """After the last step: the final prompt (or, in model tuning, the model), and the
    paths of prompt files an earlier invocation of a resumed run wrote."""
    prompts_dir = outputs.prompts_dir
    paths = outputs.prompt_paths
    final = _save_prompt(prompts_dir / "final.npy", state["trainable"],
                         {**outputs.meta, "kind": "final", "step": step})
    if final is not None:
        paths["final"] = final
    if config.train.mode == "model":
        _save_model(outputs.out_dir / "model", state["trainable"]["params"], dict(metadata))
    if "best" not in paths and outputs.best.prompt_path.exists():
        paths["best"] = outputs.best.prompt_path
    emb = prompts_dir / f"embedding_step{config.train.embedding_step}.npy"
    if "embedding" not in paths and emb.exists():
        paths["embedding"] = emb


def _write_summary(result: RunResult, metadata: Mapping[str, Any]) -> None:
    out_dir = result.out_dir
    summary = {"final_step": result.final_step, "best_step": result.best_step,
               "best_score": result.best_score, "best_metrics": result.best_metrics,
               "prompts": {k: str(v.relative_to(out_dir)) for k, v in result.prompt_paths.items()},
               "resumed_from": result.resumed_from, "initial_score": result.initial_score,
               **{k: v for k, v in metadata.items() if isinstance(v, (str, int, float))}}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True))


def _progress_bar(t_cfg: TrainConfig, start_step: int, metadata: Mapping[str, Any]):
    if not t_cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=t_cfg.steps, initial=start_step, unit="step", dynamic_ncols=True,
                desc=metadata.get("task", "train"))


def run_loop(config: RunConfig, pieces: RunPieces, *, log: Callable[[str], None] = print,
             mesh=None, step_cache: StepCache | None = None) -> RunResult:
    """Train until `config.train.steps`, resuming from `out_dir/checkpoints` if present.

    Runs of one caller share their jitted step through `step_cache` (see `StepCache`)."""
    config = config.resolve()
    t_cfg = config.train
    started_at = time.time()
    out_dir = prepare_run_folder(pieces.out_dir, config, log)
    mesh = mesh or shard.make_mesh(config.mesh)
    state, run = restore_or_init(config, pieces, mesh, log=log, step_cache=step_cache)
    _log_sizes(state, run.frozen, t_cfg.mode == "model", mesh, log)
    outputs = RunOutputs.open(out_dir, config, pieces.metadata, run.start_step)
    initial = _initial_evaluation(t_cfg, pieces, state, run, out_dir)
    hooks = PeriodicHooks(t_cfg, outputs, pieces.evaluate, run.manager)
    progress = _progress_bar(t_cfg, run.start_step, pieces.metadata)
    losses = LossLog(outputs.writer, run.manager, out_dir / "checkpoints", progress)
    it = _Prefetcher(pieces.batches(run.start_step),
                     lambda b: shard.put_batch(b, run.batch_sharding))
    step = run.start_step
    try:
        while step < t_cfg.steps:
            state, metrics = run.train_step(state, run.frozen, next(it))
            step += 1
            losses.add(step, metrics, last_eval=hooks.last_eval,
                       write=hooks.must_sync(step) or step % t_cfg.log_every == 0)
            hooks.after_step(step, state, run.frozen)
            if progress is not None:
                progress.update(1)
        losses.finish()
        run.manager.wait_until_finished()
        finalize(outputs, state, step, config=config, metadata=pieces.metadata)
    finally:
        it.close()
        outputs.writer.close()
        if progress is not None:
            progress.close()
        run.manager.wait_until_finished()
        run.manager.close()
    best = outputs.best
    result = RunResult(out_dir=out_dir, final_step=step, best_step=best.step,
                       best_score=best.score, best_metrics=best.metrics,
                       prompt_paths=outputs.prompt_paths, resumed_from=run.resumed_from,
                       seconds=time.time() - started_at,
                       initial_score=None if initial is None else initial["score"])
    _write_summary(result, pieces.metadata)
    return result


INITIAL_FILE = "initial.json"


def _initial_evaluation(t_cfg: TrainConfig, pieces: RunPieces, state: dict, run: Started,
                        out_dir: Path) -> dict[str, Any] | None:
    """`train.eval_at_start`: the initial trainables scored once (OUT/initial.json, kept
    across resumes; a resumed run that lacks it rebuilds the initial prompt and scores that,
    not the restored one). None when not asked for or the run has no evaluation."""
    if not t_cfg.eval_at_start or pieces.evaluate is None:
        return None
    path = out_dir / INITIAL_FILE
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(saved, dict) and isinstance(saved.get("score"), (int, float)):
                return saved
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass  # a file no run of ours wrote whole: score again
    trainable = state["trainable"] if run.start_step == 0 else pieces.initial_trainable()
    metrics, score = pieces.evaluate(trainable, run.frozen)
    initial = {"step": 0, "score": float(score), "metrics": metrics}
    atomic_write_text(path, json.dumps(initial, indent=2, sort_keys=True, default=float))
    return initial


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
