# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # spot quickstart: the Python API on the embedded default
#
# This notebook (percent format: open it with Jupyter + jupytext, VS Code, or run it as a
# script) loads the project's own tiny T5 1.1 backbone, tunes a soft prompt on an offline
# task, builds a small prompt library, ranks it for a new target task by task-embedding
# similarity, and plots what happened. Everything runs offline on a CPU.
#
# `SPOT_QUICKSTART_FAST=1` runs a miniature version (a few pretraining and tuning steps);
# the test suite executes the notebook that way.

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import spot  # noqa: E402
from spot.config import RunConfig, apply_overrides  # noqa: E402
from spot.data.offline.backbone import EMBEDDED_RECIPE, BackboneRecipe  # noqa: E402
from spot.data.vocab import load_vocabulary  # noqa: E402
from spot.train.pretrain import build_backbone  # noqa: E402
from spot.train.run import train  # noqa: E402

FAST = os.environ.get("SPOT_QUICKSTART_FAST") == "1"
OUT = Path(os.environ.get("SPOT_QUICKSTART_OUT", "quickstart_out"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The frozen backbone
# The backbone shipped with spot (`EMBEDDED_RECIPE`: corpus pretraining, then a multi-task
# stage on the offline suite's source tasks; docs/offline_suite.md) loads in seconds;
# `spot backbone build --force` rebuilds it from its recipe (about 40 minutes on 2 cores).

# %%
# The miniature recipe is the one tests/test_demo.py builds, so the two tests share one build.
recipe = (BackboneRecipe(reconstruct_steps=4, span_steps=12, prefix_lm_steps=4, batch_size=8)
          if FAST else EMBEDDED_RECIPE)
backbone = build_backbone(recipe)
t5 = spot.load_t5(backbone)
vocab = load_vocabulary(backbone / "vocab.model")
print(t5, f"{t5.num_params / 1e6:.1f}M parameters")

# %% [markdown]
# ## 2. Tune a prompt
# The same function `spot train-source` calls. Only the prompt is trained.

# %%
STEPS = 20 if FAST else 300


def tune(task: str, name: str, init: str = "sampled_vocab", init_path: str = ""):
    config = apply_overrides(RunConfig(), {
        "data.task": task, "data.input_length": 64, "data.target_length": 8,
        "data.batch_size": 32, "data.max_eval_examples": 100, "prompt.length": 20,
        "prompt.init": init, "prompt.init_path": init_path, "train.steps": STEPS,
        "train.eval_every": max(STEPS // 3, 1), "train.checkpoint_every": STEPS,
        "train.embedding_step": max(STEPS // 6, 1), "train.log_every": max(STEPS // 30, 1),
        "train.out_dir": str(OUT / "runs" / name), "train.progress": False,
        "model.dtype": "float32"})
    return train(config, t5=t5, vocab=vocab, log=lambda s: None)


result = tune("offline_vader_valence", "vader")
print("best validation accuracy:", result.best_score, "at step", result.best_step)

# %%
rows = [json.loads(line) for line in open(result.out_dir / "metrics.jsonl")]
train_rows = [r for r in rows if r["kind"] == "train"]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows])
ax.set(xlabel="step", ylabel="training loss", title="prompt tuning on offline_vader_valence")
fig.tight_layout()
fig.savefig(OUT / "loss.png")

# %% [markdown]
# ## 3. A small library and retrieval for a new target
# Each source run leaves a task embedding (the prompt at an early fixed step) and a source
# prompt (the best validation checkpoint). The target's embedding comes from a short run on it.

# %%
library = spot.PromptLibrary(OUT / "library")
sources = {"offline_vader_valence": result}
for task in ("offline_pos_word", "offline_rel_plural"):
    sources[task] = tune(task, task.removeprefix("offline_"))
for task, r in sources.items():
    if not library.entries(task=task):
        library.add(task=task, prompt=spot.load_prompt(r.prompt_paths["best"]),
                    embedding=spot.load_prompt(r.prompt_paths["embedding"]),
                    model="embedded", metrics={"score": r.best_score})

target = tune("offline_review_polarity", "review_polarity", init="class_labels")
target_embedding = spot.load_prompt(target.prompt_paths["embedding"])
ranking = library.rank(target_embedding, metric="per_token_cosine", by="task")
for task, score in ranking:
    print(f"{task:<28} {score:.4f}")

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.barh([t for t, _ in ranking][::-1], [s for _, s in ranking][::-1])
ax.set(xlabel="per-token cosine similarity", title="sources ranked for offline_review_polarity")
fig.tight_layout()
fig.savefig(OUT / "ranking.png")

# %% [markdown]
# ## 4. Transfer: start the target from the top-ranked source prompt

# %%
top_task = ranking[0][0]
transfer = tune("offline_review_polarity", "review_from_top", init="file",
                init_path=str(sources[top_task].prompt_paths["best"]))
print(f"from scratch: {target.best_score:.1f}   from {top_task}: {transfer.best_score:.1f}")
np.save(OUT / "scores.npy", np.array([target.best_score, transfer.best_score]))
