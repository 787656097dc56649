"""janus beside the original JanusDNA code (Qihao-Duan/JanusDNA, pure-PyTorch path, fp32), on the
same machine, alternating the two in one run.

Workloads (each timed in a fresh child process per implementation and round, so that peak memory
is that run's own):
- variant: the variant-scoring shape, the shipped janusdna-d48-chr20, 64 windows of 128 bp per
  forward; the original runs the same weights (exported through janusdna.checkpoint).
- d144-L: the d=144 configuration of the original's pretraining scripts, one sequence of L bp;
  random weights, the same in both.
Both compute the same function: the script reports the largest logit difference between them.

The original runs in its own virtual environment (see ../shared/upstream/README.md): pass its
interpreter with --original-python. Without it, or without the upstream code, only janus runs.

    python benchmarks/vs_original.py --original-python /path/to/upstream-venv/bin/python
    python benchmarks/vs_original.py --workloads variant d144-8192 --rounds 3 --original-python ...
    python benchmarks/vs_original.py --workloads d144-131072 d144-262144 --rounds 1 --repeats 1 --no-warmup  # janus only

Peak memory is the VmHWM of the timed forwards alone (with --warmup, the default, the high-water
mark is reset after an untimed forward, so the original's FlexAttention compilation is not
counted), and "above baseline" subtracts the resident memory once the model was built, before
any forward.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_UPSTREAM = REPO.parent / "shared" / "upstream" / "JanusDNA-03cd86e"
SHIPPED = "janusdna-d48-chr20"

# The original model_config.json "config" of its d=144 pretraining script without mid attention
# (scripts/pre_train/slurm_JanusDNA_wo_midattn_144dim.sh); the d=48 one differs only in widths.
ORIGINAL_CONFIG = {
    "hidden_size": 144, "flex_attn_n_embd": 256, "intermediate_size": 576, "num_hidden_layers": 8,
    "vocab_size": 12, "rms_norm_eps": 1e-06, "initializer_range": 0.02,
    "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "conv_bias": True, "bias": False},
    "bidirectional": "true,", "bidirectional_strategy": "add", "bidirectional_weight_tie": True,
    "num_experts": 16, "num_experts_per_tok": 2, "expert_layer_period": 2, "expert_layer_offset": 1,
    "num_attention_heads": 4, "attn_layer_period": 8, "attn_layer_offset": 100, "final_attention": True,
    "mid_single_direction_attention": True, "layer_fusion": False, "layer_fusion_strategy": "pool",
    "final_attention_class": "flex_attention", "bidirectional_attn_tie": False,
    "output_router_logits": False, "router_aux_loss_coef": 0.2, "return_dict": True,
}
D48 = {"hidden_size": 48, "flex_attn_n_embd": 96, "intermediate_size": 192}


def workload_shape(name: str) -> tuple[int, int]:
    """(batch, length) of a workload name."""
    if name == "variant":
        return 64, 128
    return 1, int(name.split("-")[1])


# ---- child side: one implementation, one workload, timed ----

def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _time_forwards(forward, ids, repeats: int, warmup: bool) -> dict:
    import torch

    with torch.inference_mode():
        baseline_kb = _rss_kb("VmRSS")  # the runtime, the model and the input
        if warmup:  # (and, for the original, FlexAttention compilation)
            forward(ids)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            logits = forward(ids)
            times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": _rss_kb("VmHWM") / 1024, "baseline_mb": baseline_kb / 1024,
            "logits": logits.float()}


def _janus_child(workload: str, weights_out: str | None):
    import torch

    import dnalm
    from janusdna import JanusDNA
    from janusdna.checkpoint import to_original_state_dict
    from janusdna.model import PRESETS

    if workload == "variant":
        model, _ = dnalm.load_or_preset(SHIPPED)
    else:
        torch.manual_seed(0)
        model = JanusDNA(PRESETS["janusdna-d144"])
    model.eval()
    if weights_out:
        from safetensors.torch import save_file
        save_file({k: v.clone() for k, v in to_original_state_dict(model).items()}, weights_out)
    return lambda ids: model(ids)


def _original_child(upstream: Path, workload: str, weights: str):
    import torch
    from safetensors.torch import load_file

    package_dir = upstream / "janusdna"
    if importlib.util.find_spec("wandb") is None:
        sys.modules["wandb"] = types.ModuleType("wandb")  # imported at module level, never used here
    spec = importlib.util.spec_from_file_location("janusdna_upstream", package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["janusdna_upstream"] = package
    spec.loader.exec_module(package)
    modeling = __import__("janusdna_upstream.modeling_janusdna", fromlist=["x"])

    config = copy.deepcopy(ORIGINAL_CONFIG)
    if workload == "variant":
        config.update(D48)
    model = modeling.JanusDNAForCausalLM(
        modeling.JanusDNAConfig(**config, use_mamba_kernels=False, attn_implementation="sdpa"))
    model.config._attn_implementation = "flash_attention_2"  # as on GPU: no dense [2L, 2L] mask
    state = load_file(weights)
    with torch.no_grad():  # janus's models have no final MLP: a zero fc2 makes the original's an identity
        state["model.final_mlp.2.weight"] = torch.zeros_like(model.model.final_mlp[2].weight)
        state["model.final_mlp.2.bias"] = torch.zeros_like(model.model.final_mlp[2].bias)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("model.final_mlp.0.") for k in missing):
        raise SystemExit(f"weights do not fit the original model: missing {missing}, unexpected {unexpected}")
    model.eval()
    return lambda ids: model(input_ids=ids).logits


def child(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    batch, length = workload_shape(args.workload)
    if args.impl == "janus":
        forward = _janus_child(args.workload, args.weights)
    else:
        forward = _original_child(Path(args.upstream), args.workload, args.weights)
    ids = torch.randint(7, 11, (batch, length), generator=torch.Generator().manual_seed(0))
    result = _time_forwards(forward, ids, args.repeats, args.warmup)
    np.save(args.logits_out, result.pop("logits")[0, :, 7:11].numpy())  # the four bases of row 0
    print(json.dumps(result))


# ---- parent side ----

def run_child(python: str, impl: str, workload: str, args, weights: str, logits_out: str, export: bool) -> dict:
    command = [python, __file__, "--child", "--impl", impl, "--workload", workload, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--upstream", str(args.upstream), "--logits-out", logits_out,
               "--warmup" if args.warmup else "--no-warmup"]
    if impl == "original" or export:
        command += ["--weights", weights]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{impl} {workload} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["variant", "d144-1024", "d144-8192", "d144-32768"])
    parser.add_argument("--original-python", help="interpreter of a virtualenv that runs the original code")
    parser.add_argument("--upstream", type=Path, default=DEFAULT_UPSTREAM, help="the original janusdna/ package's parent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of janus and the original per workload")
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per child (best is kept)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="an untimed forward first (--no-warmup for janus alone at long lengths)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["janus", "original"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--logits-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe

    torch.set_num_threads(args.threads)
    print(describe(args.threads))
    original = args.original_python
    if original and not (args.upstream / "janusdna" / "modeling_janusdna.py").exists():
        print(f"# skipping the original: no upstream code at {args.upstream}", file=sys.stderr)
        original = None
    elif not original:
        print("# skipping the original: no --original-python given (see ../shared/upstream/README.md)", file=sys.stderr)
    print("| workload | janus s | original s | janus speed-up | janus peak MB (above baseline) "
          "| original peak MB (above baseline) | max abs logit diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads:
            weights, logits = f"{tmp}/{workload}.safetensors", {i: f"{tmp}/{workload}-{i}.npy" for i in ("janus", "original")}
            runs = {}
            for round_ in range(args.rounds):
                for impl in (["janus", "original"] if original else ["janus"]):
                    python = sys.executable if impl == "janus" else original
                    r = run_child(python, impl, workload, args, weights, logits[impl], export=round_ == 0)
                    print(f"#   round {round_ + 1} {impl} {workload}: {r['seconds']:.3f} s, peak {r['peak_mb']:.0f} MB",
                          file=sys.stderr, flush=True)
                    runs.setdefault(impl, []).append(r)
            # the fastest run's time, the largest run's memory
            best = {impl: {**max(rs, key=lambda r: r["peak_mb"]), "seconds": min(r["seconds"] for r in rs)}
                    for impl, rs in runs.items()}
            batch, length = workload_shape(workload)
            j = best["janus"]
            cells = [f"{workload} ({batch} x {length:,} bp)", f"{j['seconds']:.3f}"]
            if "original" in best:
                o = best["original"]
                diff = np.abs(np.load(logits["janus"]) - np.load(logits["original"])).max()
                cells += [f"{o['seconds']:.3f}", f"{o['seconds'] / j['seconds']:.2f}x",
                          f"{j['peak_mb']:,.0f} ({j['peak_mb'] - j['baseline_mb']:,.0f})",
                          f"{o['peak_mb']:,.0f} ({o['peak_mb'] - o['baseline_mb']:,.0f})", f"{diff:.1e}"]
            else:
                cells += ["", "", f"{j['peak_mb']:,.0f} ({j['peak_mb'] - j['baseline_mb']:,.0f})", "", ""]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
