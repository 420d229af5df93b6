"""The learned affinity scorer of the transferability follow-up (Feng et al., 2023).

A scoring function s([P_target ; P_source]) predicts the transfer gain of initializing the
target's prompt from the source's (gain = score from that source - score from scratch). It is
trained on measured gains with the smooth-L1 loss and used to rank a pool of sources.

Two backbones:
- `encoder`: the frozen-model T5 encoder (initialized from the pretrained checkpoint and
  fine-tuned) reads the concatenated prompts as input embeddings; mean pooling and a
  two-layer regression head give the score. This is the paper's design.
- `light`: fixed features of the two prompts (mean token, mean unit-normalized token, their
  elementwise product and absolute difference) into the same regression head. Runs in seconds
  on a CPU; it is what the tests and the offline demo use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spot.errors import ConfigError, DataError, PromptError
from spot.fileio import finish_files, replace_dir, temp_dir_for

FORMAT = "spot-affinity"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class AffinityConfig:
    variant: str = "light"  # light | encoder
    hidden: int = 64
    beta: float = 1.0  # smooth-L1 transition point
    learning_rate: float = 3e-3
    encoder_learning_rate: float = 1e-4
    steps: int = 1500
    batch_size: int = 32
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in ("light", "encoder"):
            raise ConfigError(f"affinity variant must be light or encoder, got {self.variant!r}")
        if not math.isfinite(self.beta) or self.beta <= 0:
            raise ConfigError(f"smooth-L1 beta must be a positive number, got {self.beta}")
        for name in ("hidden", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"affinity {name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "encoder_learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"affinity {name} must be a finite number >= 0, got {value}")


def smooth_l1(pred, target, beta: float):
    """0.5 d^2 / beta where |d| <= beta, else |d| - 0.5 beta (mean over elements)."""
    import jax.numpy as jnp

    d = jnp.abs(pred - target)
    return jnp.mean(jnp.where(d <= beta, 0.5 * d * d / beta, d - 0.5 * beta))


def light_features(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Order-aware pair features from the two prompts' cheap summaries."""
    def summ(p):
        p = np.asarray(p, np.float64)
        unit = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        m, u = p.mean(0), unit.mean(0)
        return m / max(np.linalg.norm(m), 1e-12), u
    mt, ut = summ(target)
    ms, us = summ(source)
    return np.concatenate([mt, ms, ut, us, mt * ms, np.abs(mt - ms), ut * us]).astype(np.float32)


@dataclasses.dataclass
class Pair:
    target: str
    source: str
    gain: float  # score from this source - score from scratch
    score: float  # the target's score when initialized from this source


def gains_from_results(rows: Sequence[Any]) -> list[Pair]:
    """Mean gain per (source, target) over seeds: score(source -> target) - score(none)."""
    by: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by.setdefault((r.source, r.target), []).append(float(r.score))
    base = {t: float(np.mean(v)) for (s, t), v in by.items() if s == "none"}
    pairs = []
    for (s, t), v in sorted(by.items()):
        if s in ("none", "mixture") or t not in base:
            continue
        mean = float(np.mean(v))
        pairs.append(Pair(t, s, mean - base[t], mean))
    if not pairs:
        raise DataError("the results hold no (source, target) rows with a `none` baseline")
    return pairs


class AffinityScorer:
    """Fit on (target, source, gain) pairs; predict gains for new pairs."""

    def __init__(self, config: AffinityConfig = AffinityConfig(), *, t5: Any = None):
        if config.variant == "encoder" and t5 is None:
            raise ConfigError("the encoder variant needs the frozen model (t5=)")
        self.config = config
        self.t5 = t5
        self.params: dict | None = None
        self.scale = 1.0

    # -- model -----------------------------------------------------------------------

    def _init(self, in_dim: int, rng) -> dict:
        import jax

        h = self.config.hidden
        k1, k2 = jax.random.split(rng)
        head = {"w1": jax.random.normal(k1, (in_dim, h)) / np.sqrt(in_dim),
                "b1": np.zeros(h, np.float32),
                "w2": jax.random.normal(k2, (h, 1)) / np.sqrt(h) * 0.1,
                "b2": np.zeros(1, np.float32)}
        params = {"head": head}
        if self.config.variant == "encoder":
            params["encoder"] = self.t5.params["encoder"]
            params["token_embedder"] = self.t5.params["token_embedder"]
        return params

    def _apply(self, params: dict, x) -> Any:
        import jax
        import jax.numpy as jnp

        if self.config.variant == "encoder":
            from spot.model.t5 import Transformer

            module = self.t5.module
            full = {**self.t5.params, "encoder": params["encoder"],
                    "token_embedder": params["token_embedder"]}
            tokens = jnp.ones((x.shape[0], 1), jnp.int32)  # a lone EOS after the prompts
            encoded, mask = module.apply({"params": full}, tokens, x, method=Transformer.encode)
            feats = jnp.sum(encoded * mask[..., None], 1) / jnp.sum(mask, 1, keepdims=True)
        else:
            feats = x
        h = jax.nn.gelu(feats @ params["head"]["w1"] + params["head"]["b1"])
        return (h @ params["head"]["w2"] + params["head"]["b2"])[:, 0]

    def _inputs(self, targets: Sequence[np.ndarray], sources: Sequence[np.ndarray]) -> np.ndarray:
        if self.config.variant == "light":
            return np.stack([light_features(t, s) for t, s in zip(targets, sources)])
        width = self.t5.config.emb_dim
        for p in (*targets, *sources):
            if np.shape(p)[-1] != width:
                raise PromptError(f"embedding width {np.shape(p)[-1]} does not match the "
                                  f"model's embedding size {width}")
        return np.stack([np.concatenate([t, s], 0) for t, s in zip(targets, sources)]
                        ).astype(np.float32)

    # -- training and prediction -------------------------------------------------------

    def fit(self, pairs: Sequence[Pair], embeddings: Mapping[str, Sequence[np.ndarray]]
            ) -> "AffinityScorer":
        import jax
        import optax

        cfg = self.config
        xs_t, xs_s, ys = [], [], []
        for p in pairs:
            for et in _runs(embeddings, p.target):
                for es in _runs(embeddings, p.source):
                    xs_t.append(et)
                    xs_s.append(es)
                    ys.append(p.gain)
        x = self._inputs(xs_t, xs_s)
        y = np.asarray(ys, np.float32)
        self.scale = float(max(np.std(y), 1e-6))  # regress gains in units of their spread
        y = y / self.scale
        params = self._init(x.shape[-1],
                            jax.random.PRNGKey(cfg.seed))
        labels = jax.tree_util.tree_map_with_path(
            lambda path, _: "head" if str(getattr(path[0], "key", "")) == "head" else "backbone",
            params)
        opt = optax.multi_transform(
            {"head": optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay),
             "backbone": optax.adamw(cfg.encoder_learning_rate, weight_decay=cfg.weight_decay)},
            labels)
        state = opt.init(params)

        @jax.jit
        def step(params, state, xb, yb):
            loss, grads = jax.value_and_grad(
                lambda p: smooth_l1(self._apply(p, xb), yb, cfg.beta))(params)
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        rng = np.random.default_rng(cfg.seed)
        n = len(y)
        for _ in range(cfg.steps):
            idx = rng.integers(0, n, size=min(cfg.batch_size, n))
            params, state, loss = step(params, state, x[idx], y[idx])
        if not np.isfinite(float(loss)):
            raise ConfigError("affinity training diverged; lower the learning rate")
        self.params = params
        return self

    def predict(self, targets: Sequence[np.ndarray], sources: Sequence[np.ndarray]) -> np.ndarray:
        if self.params is None:
            raise ConfigError("the affinity scorer is not trained")
        x = self._inputs(targets, sources)
        return np.asarray(self._apply(self.params, x)) * self.scale

    def score_pool(self, target_runs: Sequence[np.ndarray],
                   pool: Mapping[str, Sequence[np.ndarray]]) -> dict[str, float]:
        """Predicted gain per source task, averaged over all (target run, source run) pairs."""
        out = {}
        for source, runs in pool.items():
            pairs_t = [t for t in target_runs for _ in runs]
            pairs_s = [s for _ in target_runs for s in runs]
            out[source] = float(np.mean(self.predict(pairs_t, pairs_s)))
        return out

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save

        if self.params is None:
            raise ConfigError("nothing to save: the affinity scorer is not trained")
        import jax

        flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
                for kp, v in jax.tree_util.tree_flatten_with_path(self.params)[0]
                if str(getattr(kp[0], "key", "")) == "head"}
        meta = {"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(self.config),
                "scale": self.scale}
        meta_text = json.dumps(meta, indent=2)
        path = Path(path)
        if path.exists() and not (path.is_dir() and ((path / "affinity.json").is_file()
                                                     or not any(path.iterdir()))):
            raise DataError(f"{path}: exists and is not an affinity scorer folder; refusing to "
                            "replace it")
        # Assembled in a temporary sibling and renamed into place: a failure never leaves a
        # new head beside an old affinity.json; other files in the folder are kept.
        tmp = temp_dir_for(path)
        try:
            (tmp / "head.safetensors").write_bytes(save(flat))
            (tmp / "affinity.json").write_text(meta_text, encoding="utf-8")
            finish_files(tmp, ("head.safetensors", "affinity.json"))
            if self.config.variant == "encoder":
                from spot.model.checkpoints import save_native

                save_native(tmp / "encoder", self.t5.config,
                            {**jax.tree_util.tree_map(np.asarray, self.t5.params),
                             "encoder": jax.tree_util.tree_map(np.asarray, self.params["encoder"]),
                             "token_embedder": jax.tree_util.tree_map(
                                 np.asarray, self.params["token_embedder"])})
            replace_dir(tmp, path, owned=("head.safetensors", "affinity.json", "encoder"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, *, t5: Any = None) -> "AffinityScorer":
        from safetensors.numpy import load_file

        path = Path(path)
        meta_path = path / "affinity.json"
        if not meta_path.is_file():
            raise DataError(f"{path} is not an affinity scorer folder (no affinity.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
            raise DataError(f"{path}: unsupported affinity format {meta.get('format')} "
                            f"v{meta.get('version')}")
        config = AffinityConfig(**meta["config"])
        if config.variant == "encoder":
            from spot.model.api import load_t5

            t5 = load_t5(path / "encoder")
        scorer = cls(config, t5=t5)
        flat = load_file(str(path / "head.safetensors"))
        scorer.params = {"head": {k.split("/", 1)[1]: v for k, v in flat.items()}}
        if config.variant == "encoder":
            scorer.params["encoder"] = t5.params["encoder"]
            scorer.params["token_embedder"] = t5.params["token_embedder"]
        scorer.scale = float(meta["scale"])
        return scorer


def _runs(embeddings: Mapping[str, Sequence[np.ndarray]], task: str) -> Sequence[np.ndarray]:
    runs = embeddings.get(task)
    if not runs:
        raise DataError(f"no task embedding for {task!r}")
    return runs


def leave_one_target_out(pairs: Sequence[Pair], embeddings: Mapping[str, Sequence[np.ndarray]],
                         config: AffinityConfig = AffinityConfig(), *, t5: Any = None,
                         ks: Sequence[int] = (1, 3)) -> dict[str, dict[str, float]]:
    """Rank quality of the scorer (trained without each target in turn) beside the six
    similarity metrics, averaged over targets: Spearman, Pearson, Regret@k."""
    from spot.retrieval.quality import ranking_quality
    from spot.retrieval.similarity import METRICS, task_similarity

    targets = sorted({p.target for p in pairs})
    if len(targets) < 2:
        raise DataError("leave-one-target-out needs at least two targets")
    per: dict[str, list[dict[str, float]]] = {m: [] for m in ("affinity", *METRICS)}
    for t in targets:
        train = [p for p in pairs if p.target != t]
        test = [p for p in pairs if p.target == t]
        if len(test) < 2:
            continue
        scorer = AffinityScorer(config, t5=t5).fit(train, embeddings)
        # Scores rank like gains (one baseline per target) and give Regret@k its denominator.
        true = {p.source: p.score for p in test}
        pool = {p.source: embeddings[p.source] for p in test}
        per["affinity"].append(ranking_quality(scorer.score_pool(embeddings[t], pool), true,
                                               ks=ks))
        for m in METRICS:
            predicted = {s: task_similarity(embeddings[t], runs, m) for s, runs in pool.items()}
            per[m].append(ranking_quality(predicted, true, ks=ks))
    return {m: mean_quality(qs) for m, qs in per.items() if qs}


def mean_quality(per_target: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Average `ranking_quality` results over targets, skipping undefined (None) values."""
    out: dict[str, float | None] = {}
    for key in per_target[0]:
        values = [float(q[key]) for q in per_target if q.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
