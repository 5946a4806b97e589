"""Training throughput and MFU of a BERT-base member as runner trains it (`precision = "auto"`).

Builds BERT-base from a config (hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary
30,522; no Hub download) as a sequence classifier with 4 labels and the attention the scratch
backbone asks for (SDPA), and trains it with Hugging Face `Trainer` under the arguments runner
gives a member: `runner.train.arguments.precision_args("auto")` (bf16 where the GPU supports it, else fp16;
nothing on a CPU) and `runner.train.arguments.loader_args` (pinned memory and worker processes on CUDA).
Every sample is `--max-length` tokens long (128 by default; random token ids, no padding), so every
token counted is a real one. `--warmup` steps are run first (CUDA kernels chosen, memory allocated),
then `--steps` steps are timed, from the end of the last warm-up step to the end of the last step
(the GPU synchronised at both ends).

FLOPs per training sample (forward + backward), stated as in PaLM (Chowdhery et al. 2022, app. B):

    6 * N * T  +  12 * L * d * T^2

N = the parameters outside the embedding tables (lookups do no matrix multiplication), T = tokens
per sample, L = layers, d = hidden size; the second term is the attention scores and their
weighted sum (QK^T and AV: 2 * 2 * T^2 * d per layer forward, times 3 for forward + backward).
MFU = achieved FLOPs per second / the device's peak dense bf16 (or fp16) tensor FLOPs: `PEAK_TFLOPS`
by GPU name, `--peak-tflops` to give another. On a CPU the peak is an *estimate* (cores x clock x
FP32 FLOPs per cycle from the vector units /proc/cpuinfo names), and the figure is a CPU figure.

    python bench/throughput.py                            # BERT-base, 128 tokens, on the GPU if there is one
    python bench/throughput.py --model tiny --steps 20    # a CPU check: hidden 64, 2 layers

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

# Peak dense bf16 tensor TFLOPS (fp16 for cards without bf16), from the vendors' data sheets
# (SXM parts; "PCIe" where it differs). Matched by substring of torch.cuda.get_device_name(),
# most specific first.
PEAK_TFLOPS = (
    ("GH200", 989.0), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
    ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("A30", 165.0), ("V100", 125.0), ("T4", 65.0),
)
MODELS = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 vocab_size=30522),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                 vocab_size=8000),
}


def gpu_peak(name: str) -> float | None:
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def cpu_peak() -> tuple[float, str]:
    """An estimate of the CPU's FP32 peak in TFLOPS (cores this process may use x clock x FLOPs per
    cycle: 2 FMA units of 16 (AVX-512) or 8 (AVX2) lanes, x2 for multiply-add), and how it was made."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    ghz = max(mhz) / 1000 if mhz else 2.0
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * 2 * lanes  # 2 FMA units x (multiply + add) x lanes
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    unit = "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE"
    return cores * ghz * per_cycle / 1000, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FP32 FLOPs/cycle ({unit})"


def flops_per_sample(model, config, tokens: int) -> tuple[float, int]:
    embedding = {id(p) for m in model.modules() if type(m).__name__ == "Embedding" for p in m.parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embedding)
    attention = 12 * config.num_hidden_layers * config.hidden_size * tokens ** 2
    return 6 * n * tokens + attention, n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="training samples/s and MFU of BERT-base under runner's precision auto")
    ap.add_argument("--model", choices=sorted(MODELS), default="base")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if the table lacks it")
    opts = ap.parse_args(argv)
    for name in ("max_length", "batch_size", "steps", "warmup"):
        if getattr(opts, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from runner.train.arguments import loader_args, precision_args

    cuda = torch.cuda.is_available()
    config = BertConfig(**MODELS[opts.model], max_position_embeddings=max(512, opts.max_length), num_labels=4,
                        attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    per_sample, n_params = flops_per_sample(model, config, opts.max_length)
    n = opts.batch_size * (opts.warmup + opts.steps)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (n, opts.max_length), generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]), "labels": labels[i]}

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    precision = precision_args("auto")
    loaders = loader_args(SimpleNamespace(spec=SimpleNamespace()))
    with tempfile.TemporaryDirectory(prefix="runner-throughput-") as out:
        args = TrainingArguments(output_dir=out, max_steps=opts.warmup + opts.steps,
                                 per_device_train_batch_size=opts.batch_size, learning_rate=5e-5,
                                 save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
                                 disable_tqdm=True, **loaders, **precision)
        trainer = Trainer(model=model, args=args, train_dataset=Samples(), callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    timed = marks[opts.warmup:] if opts.warmup else marks
    start = marks[opts.warmup - 1] if opts.warmup else None
    if start is None or len(timed) < 1:
        raise SystemExit("no timed steps: give --warmup at least 1 so the clock has a start")
    seconds = timed[-1] - start
    samples_s = opts.batch_size * len(timed) / seconds
    achieved = samples_s * per_sample / 1e12
    if cuda:
        device = torch.cuda.get_device_name(0)
        peak, how = opts.peak_tflops or gpu_peak(device), "dense bf16/fp16 tensor peak of the data sheet"
        kind = "GPU"
    else:
        device = f"CPU ({torch.get_num_threads()} torch threads)"
        est, how = cpu_peak()
        peak, how = opts.peak_tflops or est, f"ESTIMATED FP32 peak: {how}"
        kind = "CPU"
    mfu = achieved / peak if peak else None
    precision_name = next(iter(precision), "fp32")
    print(f"{kind} figure · {device} · BERT-{opts.model} (N = {n_params / 1e6:.1f}M non-embedding parameters) · "
          f"{opts.max_length} tokens · batch {opts.batch_size} · {precision_name} · {len(timed)} timed steps")
    print(f"FLOPs per sample = 6*N*T + 12*L*d*T^2 = {per_sample / 1e9:.2f} GFLOPs")
    print(f"{samples_s:,.1f} samples/s = {samples_s * opts.max_length:,.0f} tokens/s = {achieved:.3f} TFLOPS achieved")
    if mfu is None:
        print(f"MFU: unknown peak for {device!r}; give --peak-tflops")
    else:
        print(f"MFU {100 * mfu:.1f} % of {peak:.3g} TFLOPS ({how})")
    print(json.dumps({"bench": "throughput", "kind": kind, "device": device, "model": opts.model,
                      "non_embedding_params": n_params, "max_length": opts.max_length, "batch_size": opts.batch_size,
                      "precision": precision_name, "dataloader": loaders, "timed_steps": len(timed),
                      "samples_per_s": round(samples_s, 2), "flops_per_sample": per_sample,
                      "achieved_tflops": round(achieved, 4), "peak_tflops": peak, "peak_source": how,
                      "mfu": round(mfu, 4) if mfu is not None else None}))


if __name__ == "__main__":
    main()
