"""Training throughput (tokens/s) of Janus modeling on CPU: forward + backward + AdamW step, float32.

    python benchmarks/train_throughput.py                       # janusdna-d32 and janusdna-d72, L=1024
    python benchmarks/train_throughput.py --presets janusdna-d32 --batch-size 4 --steps 5
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import dnalm


def measure(preset: str, seq_len: int, batch_size: int, steps: int) -> float:
    """Best tokens/s over `steps` optimizer steps, after one warm-up step."""
    torch.manual_seed(0)
    model = dnalm.from_preset(preset).train()
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.95))
    ids = torch.randint(7, 11, (batch_size, seq_len))
    best = 0.0
    for step in range(steps + 1):
        start = time.perf_counter()
        loss, _ = model.pretraining_loss(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            best = max(best, batch_size * seq_len / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["janusdna-d32", "janusdna-d72"])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# training throughput, float32, {args.threads} threads, batch {args.batch_size} x {args.seq_len} bp, "
          f"torch {torch.__version__}, {platform.machine()}, best of {args.steps} steps after 1 warm-up")
    print("| model | parameters | tokens/s |")
    print("|---|---:|---:|")
    for preset in args.presets:
        tokens_per_s = measure(preset, args.seq_len, args.batch_size, args.steps)
        params = dnalm.from_preset(preset).num_parameters()
        print(f"| {preset} | {params:,} | {tokens_per_s:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
