"""The baseline spot is measured against: Hugging Face PEFT prompt tuning on PyTorch.

Builds a `transformers` T5ForConditionalGeneration with T5 1.1's shape and random weights
(no hub access needed), wraps it in PEFT prompt tuning (PromptTuningConfig, SEQ_2_SEQ_LM,
num_transformer_submodules=1), and times real training steps (forward, backward, Adafactor
update) with dropout 0.1 on, on synthetic full-length batches. Prints one JSON object with
the keys `spot bench train-step` prints, so the two compare line by line.

    python scripts/peft_reference.py --model t5_1_1_small --batch 8 --input-length 64 \
        --target-length 8 --prompt-length 100 --steps 20 --dtype float32

Optimizer: `transformers.optimization.Adafactor(lr=0.3, scale_parameter=False,
relative_step=False, warmup_init=False, decay_rate=-0.8, clip_threshold=1.0,
weight_decay=1e-5)`. Its decay_rate is the exponent itself (beta2_t = 1 - t**decay_rate),
so -0.8 here is t5x/optax's decay_rate 0.8. Two differences that cost nothing measurable:
it factors every 2-D parameter (the [L, E] prompt included; spot keeps it unfactored) and
multiplies the weight decay by the learning rate.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spot.bench.device import peak_flops_per_sec  # noqa: E402
from spot.bench.flops import train_step_flops  # noqa: E402
from spot.model.t5 import T5Config  # noqa: E402


def hf_config(cfg: T5Config):
    """A transformers T5Config with the same shape and numerics as spot's preset."""
    from transformers import T5Config as HFT5Config

    # "gated-gelu" is T5 1.1's tanh-approximated gelu (gelu_new), as spot's.
    act = ("gated-" if cfg.is_gated else "") + cfg.mlp_activations[0]
    return HFT5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
        num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_epsilon,
        feed_forward_proj=act,
        tie_word_embeddings=cfg.logits_via_embedding, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1)


def build(args):
    import torch
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import T5ForConditionalGeneration

    cfg = T5Config.preset(args.model)
    torch.manual_seed(args.seed)
    hf = hf_config(cfg)
    hf._attn_implementation = args.attn_implementation
    model = T5ForConditionalGeneration(hf)
    if args.dtype == "bfloat16":
        model = model.to(torch.bfloat16)  # frozen weights in bfloat16, as spot on accelerators
    peft_cfg = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=args.prompt_length,
        num_transformer_submodules=1, token_dim=cfg.emb_dim,
        prompt_tuning_init=PromptTuningInit.RANDOM)
    model = get_peft_model(model, peft_cfg)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # the prompt and its optimizer state stay float32
    model.to(args.device)
    model.train()  # dropout 0.1 stays on in the frozen model, as in the recipe
    return cfg, model


def make_optimizer(model):
    from transformers.optimization import Adafactor

    trainable = [p for p in model.parameters() if p.requires_grad]
    return Adafactor(trainable, lr=0.3, scale_parameter=False, relative_step=False,
                     warmup_init=False, decay_rate=-0.8, clip_threshold=1.0, weight_decay=1e-5)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"1 x {torch.cuda.get_device_name(device)} (gpu)"
    return "1 x cpu (cpu)"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="t5_1_1_small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input-length", type=int, default=64)
    p.add_argument("--target-length", type=int, default=8)
    p.add_argument("--prompt-length", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor: the real one; eager/aot_eager trace "
                        "without generating kernels, for dry runs)")
    p.add_argument("--attn-implementation", default="sdpa", choices=("sdpa", "eager"))
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1 (warm-up holds the compilation)")

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, model = build(args)
    optimizer = make_optimizer(model)
    forward = torch.compile(model, backend=args.compile_backend) if args.compile else model
    rng = np.random.default_rng(args.seed)
    batches = []
    for _ in range(2):
        inputs = rng.integers(2, cfg.vocab_size, (args.batch, args.input_length))
        labels = rng.integers(2, cfg.vocab_size, (args.batch, args.target_length))
        batches.append({
            "input_ids": torch.as_tensor(inputs, device=args.device),
            "attention_mask": torch.ones(args.batch, args.input_length, dtype=torch.long,
                                         device=args.device),
            "labels": torch.as_tensor(labels, device=args.device)})
    cuda = args.device.startswith("cuda")

    def step(batch):
        loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    for i in range(args.warmup):
        loss = step(batches[i % 2])
        if i == 0:  # torch.compile compiles the forward and backward here
            if cuda:
                torch.cuda.synchronize()
            first_step_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    # spot's peak counts the whole process; this one, warm-up included, is its match.
    warmup_mem = int(torch.cuda.max_memory_allocated()) if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # Same timing as spot: on GPU step i is queued before step i-1 is waited for (CPU
    # steps run synchronously); a step's time is the gap between consecutive completions.
    times, pending = [], None
    last = time.perf_counter()
    for i in range(args.steps):
        loss = step(batches[i % 2])
        if not cuda:
            now = time.perf_counter()
            times.append(now - last)
            last = now
            continue
        done = torch.cuda.Event()
        done.record()
        if pending is not None:
            pending.synchronize()
            now = time.perf_counter()
            times.append(now - last)
            last = now
        pending = done
    if pending is not None:
        pending.synchronize()
        times.append(time.perf_counter() - last)
    final_loss = float(loss)
    median = statistics.median(times)
    flops = train_step_flops(cfg, batch=args.batch, input_length=args.input_length,
                             target_length=args.target_length, prompt_length=args.prompt_length)
    kind = torch.cuda.get_device_name(args.device) if cuda else "cpu"
    peak = peak_flops_per_sec(kind, args.dtype)
    if cuda:
        mem = int(torch.cuda.max_memory_allocated())
        mem_source = "torch.cuda.max_memory_allocated (timed steps)"
    else:
        mem, mem_source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, \
            "process_max_rss"
    import peft
    import transformers

    return {
        "benchmark": "train_step", "framework": "pytorch+peft", "model": args.model,
        "random_weights": True, "batch": args.batch, "input_length": args.input_length,
        "target_length": args.target_length, "prompt_length": args.prompt_length,
        "dtype": args.dtype, "compiled": bool(args.compile),
        "compile_backend": args.compile_backend if args.compile else None,
        "attn_implementation": args.attn_implementation,
        "examples_per_sec": args.batch / median,
        "tokens_per_sec": args.batch * (args.input_length + args.target_length) / median,
        "tokens_per_step": args.batch * (args.input_length + args.target_length),
        "step_time_ms_median": median * 1e3,
        "step_time_ms_mean": statistics.fmean(times) * 1e3, "step_time_ms_min": min(times) * 1e3,
        "flops_per_step": flops.total,
        "flops_counted": "matmuls; forward + backward w.r.t. activations (no weight grads)",
        "mfu": None if peak is None else flops.total / median / peak,
        "peak_flops_per_sec": peak, "peak_memory_bytes": mem, "memory_source": mem_source,
        "warmup_peak_memory_bytes": warmup_mem, "device": device_name(args.device),
        "steps": args.steps, "warmup": args.warmup, "warmup_s": warmup_s,
        "first_step_s": first_step_s, "final_loss": final_loss,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    print(json.dumps(main()))
