"""Where a JanusDNA forward's time goes: torch.profiler's table of operators by self time for one
forward of d=144 (random weights) over one sequence of --length bp, and the Janus attention's
share and FLOP rate (it computes 2 L^2 scores per head, each costing head_dim multiply-adds for
the scores and head_dim for the weighted values; its time is all the attention function takes,
the kernel and its data preparation).

    python benchmarks/profile_forward.py --length 32768 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import profile

ATTENTION_FUNCTION = "_JanusBlockwiseAttention"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15, help="operators shown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from janusdna import JanusDNA
    from janusdna.model import PRESETS
    from machine import describe

    print(describe(args.threads))
    torch.manual_seed(0)
    cfg = PRESETS["janusdna-d144"]
    model = JanusDNA(cfg).eval()
    ids = torch.randint(7, 11, (1, args.length))
    with torch.inference_mode():
        model(ids[:, :256])  # builds the C kernels outside the profile
        with profile() as prof:
            model(ids)
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    attention = sum(e.cpu_time_total for e in events if e.key == ATTENTION_FUNCTION) / 1e6
    head_dim = cfg.d_model // cfg.n_heads
    flops = 2 * args.length**2 * cfg.n_heads * head_dim * 4
    print(f"Janus attention: {attention:.1f} of {total:.1f} s ({attention / total:.0%}), "
          f"{flops / attention / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
