"""`janus pretrain`: a model's pretraining objective on a reference genome.

The objective is the architecture's own (dnalm's pretraining_loss; JanusDNA: every position
predicted from all the others, plus the MoE load-balancing term). N bases stay in the input but
are excluded from the loss.

Data are windows sampled uniformly from the allowed intervals of an indexed FASTA. The window of
global sample i at step s is a pure function of (seed, s, i), so resuming is exact without saving
any sampler position, and any split of a step's samples over processes (torchrun) and gradient
accumulation micro-steps sees exactly the same data.

Run directory:
    RUN_DIR/model/                          final model (native format)
    RUN_DIR/checkpoints/step-NNNNNN/        model + trainer_state.pt (optimizer, RNG, step)
    RUN_DIR/metrics.parquet                 one row per logged step
    RUN_DIR/run.json                        the options and command line
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

import dnalm
from dnalm.tokenizer import N


from ..io import intervals as iv
from ..errors import DataError, UsageError
from ..io.fasta import Reference
from ..engine.runtime import autocast_context, log, resolve_device, set_threads
from ..engine.parallel import full_model_state, full_optimizer_state, load_full_state, parallelize
from ..engine.schedule import lr_at

@dataclass
class PretrainOptions:
    fasta: Path
    run_dir: Path
    preset: str = "janusdna-d32"
    config: Path | None = None
    init_from: Path | None = None
    bed: Path | None = None
    val_chroms: list[str] = field(default_factory=list)
    val_bed: Path | None = None
    val_regions: list[str] = field(default_factory=list)
    seq_len: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    steps: int = 1000
    lr: float | None = None
    min_lr: float = 1e-4
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    max_n_frac: float = 0.1
    rc_augment: bool = True
    save_every: int = 500
    eval_every: int = 100
    log_every: int = 10
    val_windows: int = 64
    resume: bool = False
    fsdp: bool = False
    device: str = "auto"
    threads: int | None = None
    quiet: bool = False


class WindowSampler:
    """Windows of seq_len bases drawn uniformly over a set of intervals of a reference."""

    def __init__(self, reference: Reference, regions: pd.DataFrame, seq_len: int, max_n_frac: float,
                 rc_augment: bool, seed: int, stream: int):
        self.reference, self.seq_len = reference, seq_len
        self.max_n_frac, self.rc_augment = max_n_frac, rc_augment
        self.seed, self.stream = seed, stream
        self.regions, self.cumulative = iv.window_starts_table(regions, seq_len)
        if not len(self.regions):
            raise DataError(f"no interval of {reference.path} is at least {seq_len} bp long")

    def window(self, step: int, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.stream, step, index])
        for _ in range(1000):
            k = int(rng.integers(self.cumulative[-1]))
            row = int(np.searchsorted(self.cumulative, k, side="right"))
            start = int(self.regions.at[row, "start"]) + k - (int(self.cumulative[row - 1]) if row else 0)
            ids = dnalm.encode(self.reference.fetch(self.regions.at[row, "chrom"], start, start + self.seq_len))
            if (ids == N).float().mean().item() <= self.max_n_frac:
                break
        else:
            raise DataError(f"{self.reference.path}: no window with <= {self.max_n_frac:.0%} N found in 1000 draws")
        if self.rc_augment and rng.random() < 0.5:
            ids = dnalm.reverse_complement(ids)
        return ids

    def batch(self, step: int, indices: range) -> torch.Tensor:
        return torch.stack([self.window(step, i) for i in indices])


class LossModule(torch.nn.Module):
    """The model's pretraining objective as a module, so DDP can wrap it and FSDP shard it.
    validation=True gives validation_loss instead (through the same module, as FSDP needs)."""

    def __init__(self, model: dnalm.DNALM):
        super().__init__()
        self.model = model

    def forward(self, ids, validation: bool = False):
        return self.model.validation_loss(ids) if validation else self.model.pretraining_loss(ids)


def split_regions(opts: PretrainOptions, reference: Reference) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training intervals, validation intervals): the BED or all contigs, minus the held-out part."""
    allowed = iv.read_bed(opts.bed)[iv.COLUMNS] if opts.bed else iv.from_contigs(reference.lengths)
    unknown = sorted(set(allowed["chrom"]) - set(reference.lengths))
    if unknown:
        raise DataError(f"{opts.bed}: contigs not in {opts.fasta}: {', '.join(unknown[:5])}")
    val_parts = []
    if opts.val_chroms:
        missing = [c for c in opts.val_chroms if c not in reference.lengths]
        if missing:
            raise UsageError(f"--val-chroms: {', '.join(missing)} not in {opts.fasta}")
        val_parts.append(iv.keep_chroms(iv.from_contigs(reference.lengths), set(opts.val_chroms)))
    if opts.val_bed:
        val_parts.append(iv.read_bed(opts.val_bed)[iv.COLUMNS])
    if opts.val_regions:
        val_parts.append(iv.from_regions(opts.val_regions, reference.lengths))
    val = iv.merge(pd.concat(val_parts)) if val_parts else pd.DataFrame(columns=iv.COLUMNS)
    train = iv.subtract(allowed, val) if len(val) else iv.merge(allowed)
    return train, val


def build_model(opts: PretrainOptions) -> dnalm.DNALM:
    """The model to train: --init-from's weights (its max_seq_len raised to --seq-len when that is
    longer: context extension), else a new model of --config (a native config.json: "arch" and the
    architecture's fields) or of --preset."""
    if opts.init_from:
        try:
            start = dnalm.load(opts.init_from)
        except dnalm.CheckpointError as exc:
            raise UsageError(f"--init-from: {exc}") from None
        if not opts.seq_len or opts.seq_len <= start.max_seq_len:
            return start.train()
        model = type(start)(dataclasses.replace(start.config, max_seq_len=opts.seq_len))
        model.load_state_dict(start.state_dict())
        return model
    if opts.config:
        try:
            raw = json.loads(Path(opts.config).read_text())
            arch = dnalm.architecture(raw.get("arch", "janusdna"))
            config = arch.config_class.from_dict(
                {k: v for k, v in raw.items() if k not in ("format", "format_version", "arch")})
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"--config {opts.config}: {exc}") from None
        torch.manual_seed(opts.seed)
        return arch.model_class(config)
    try:
        return dnalm.from_preset(opts.preset, seed=opts.seed)
    except dnalm.CheckpointError as exc:
        raise UsageError(f"--preset: {exc}") from None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*/trainer_state.pt"))
    return found[-1].parent if found else None


# Options that must not change across --resume, or the continued run is a different run.
_RESUME_INVARIANTS = ("preset", "config", "init_from", "seq_len", "batch_size", "grad_accum", "steps", "lr", "min_lr",
                      "warmup_frac", "weight_decay", "seed", "max_n_frac", "rc_augment", "world_size", "fsdp")


def pretrain(opts: PretrainOptions, argv: list[str] | None = None) -> Path:
    """Train; returns RUN_DIR/model. Works alone or under torchrun (gloo on CPU, NCCL on CUDA),
    with DDP or, with opts.fsdp, FSDP."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(opts.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    set_threads(opts.threads)
    is_main = rank == 0
    sharded = distributed and opts.fsdp
    if opts.fsdp and not distributed:
        log("pretrain: --fsdp shards over torchrun processes; one process trains the whole model")

    run_dir = Path(opts.run_dir)
    reference = Reference(opts.fasta)
    model = build_model(opts).to(device)
    seq_len = opts.seq_len or model.config.max_seq_len
    global_batch = opts.batch_size * opts.grad_accum * world
    peak_lr = opts.lr if opts.lr is not None else model.pretraining_peak_lr(global_batch * seq_len)
    record = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
              "seq_len": seq_len, "lr": peak_lr, "world_size": world, "fsdp": sharded}

    train_regions, val_regions = split_regions(opts, reference)
    train_sampler = WindowSampler(reference, train_regions, seq_len, opts.max_n_frac, opts.rc_augment, opts.seed, stream=0)
    val_sampler = (WindowSampler(reference, val_regions, seq_len, opts.max_n_frac, False, opts.seed, stream=1)
                   if len(val_regions) else None)

    loss_module = LossModule(model)
    if distributed:
        loss_module = parallelize(loss_module, model, device, fsdp=sharded)
    optimizer = torch.optim.AdamW(model.optimizer_groups(opts.weight_decay), lr=peak_lr, betas=(0.9, 0.95), eps=1e-8)
    start_step, metrics = 0, []
    if opts.resume:
        start_step, metrics = _restore(run_dir, record, model, optimizer, device, sharded)
    elif (run_dir / "checkpoints").exists():
        raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new -o")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps({"options": record, "argv": argv or sys.argv}, indent=2) + "\n")
        log(f"pretrain: {model.config.name}, {model.num_parameters():,} parameters "
            f"({model.num_activated_parameters():,} activated), {world} process(es){' (FSDP)' if sharded else ''}, "
            f"global batch "
            f"{global_batch} x {seq_len} bp, peak lr {peak_lr:.2e}, steps {start_step}->{opts.steps}")


    progress = _Progress(opts.steps, start_step, enabled=is_main and not opts.quiet)
    tokens_per_step = global_batch * seq_len
    step_start = time.perf_counter()
    for step in range(start_step, opts.steps):
        lr = lr_at(step, opts.steps, peak_lr, opts.min_lr, opts.warmup_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        components: dict[str, float] = {}
        for micro in range(opts.grad_accum):
            first = (micro * world + rank) * opts.batch_size
            ids = train_sampler.batch(step, range(first, first + opts.batch_size)).to(device)
            with autocast_context(device):
                loss, parts = loss_module(ids)
            (loss / opts.grad_accum).backward()
            for name, value in parts.items():
                components[name] = components.get(name, 0.0) + value.item() / opts.grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        if distributed:
            stats = torch.tensor(list(components.values()), device=device, dtype=torch.float64)
            dist.all_reduce(stats)
            components = dict(zip(components, (stats / world).tolist()))
        train_loss = components.pop("cross_entropy")
        last = done == opts.steps
        evaluate = val_sampler is not None and (done % opts.eval_every == 0 or last)
        val_loss = _validate(loss_module, val_sampler, opts, device, rank, world) if evaluate else float("nan")
        if done % opts.log_every == 0 or evaluate or last:
            elapsed = time.perf_counter() - step_start
            metrics.append({
                "step": done, "tokens": done * tokens_per_step, "train_loss": train_loss,
                "val_loss": val_loss, "val_perplexity": math.exp(val_loss) if not math.isnan(val_loss) else float("nan"),
                "lr": lr, **components,
                "tokens_per_s": tokens_per_step * (done - progress.last_logged_step) / max(elapsed, 1e-9),
            })
            progress.last_logged_step, step_start = done, time.perf_counter()
            if is_main:
                _write_metrics(run_dir, metrics)
        progress.update(done, train_loss, val_loss)
        if done % opts.save_every == 0 or last:
            _save_checkpoint(run_dir, done, record, model, optimizer, sharded, is_main)
    progress.close()

    final = run_dir / "model"
    weights = full_model_state(model, sharded)
    if is_main:
        dnalm.save(model, final, weights)
        log(f"pretrain: wrote {final}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    reference.close()
    return final


@torch.no_grad()
def _validate(loss_module, sampler: WindowSampler, opts: PretrainOptions, device, rank: int, world: int) -> float:
    """Mean cross-entropy over non-N positions of a fixed set of held-out windows, split over
    ranks. Every rank runs the same number of batches (FSDP gathers weights in each forward); a
    rank past the last window repeats one and does not count it."""
    loss_module.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    total_tokens = torch.zeros((), device=device, dtype=torch.float64)
    per_round = world * opts.batch_size
    for first in range(rank * opts.batch_size, math.ceil(opts.val_windows / per_round) * per_round, per_round):
        counts = first < opts.val_windows
        window_range = range(first, min(first + opts.batch_size, opts.val_windows)) if counts else range(1)
        ids = sampler.batch(0, window_range).to(device)
        with autocast_context(device):
            loss_sum, counted = loss_module(ids, validation=True)
        if counts:
            total_loss += loss_sum.double()
            total_tokens += counted
    if world > 1:
        dist.all_reduce(total_loss)
        dist.all_reduce(total_tokens)
    return (total_loss / total_tokens.clamp(min=1)).item()


def _save_checkpoint(run_dir: Path, step: int, record: dict, model: dnalm.DNALM, optimizer, sharded: bool,
                     is_main: bool):
    """Every rank calls this (FSDP gathers the states); rank 0 writes."""
    weights = full_model_state(model, sharded)
    optimizer_state = full_optimizer_state(model, optimizer, sharded)
    if not is_main:
        return
    target = checkpoint_dir(run_dir, step)
    tmp = target.with_name(target.name + ".tmp")
    dnalm.save(model, tmp, weights)
    torch.save({"step": step, "options": json.dumps(record), "optimizer": optimizer_state,
                "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _restore(run_dir: Path, record: dict, model: dnalm.DNALM, optimizer, device,
             sharded: bool) -> tuple[int, list[dict]]:
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise UsageError(f"--resume: no checkpoint under {run_dir / 'checkpoints'}")
    state = torch.load(ckpt / "trainer_state.pt", map_location=device, weights_only=True)
    saved = json.loads(state["options"])
    changed = [f"{k}: {saved.get(k)!r} -> {record.get(k)!r}" for k in _RESUME_INVARIANTS if saved.get(k) != record.get(k)]
    if changed:
        raise UsageError(f"--resume {run_dir}: options differ from the saved run ({'; '.join(changed)})")
    load_full_state(model, optimizer, dnalm.load(ckpt, device=device).state_dict(), state["optimizer"], sharded)
    torch.set_rng_state(state["torch_rng"].cpu())
    metrics_path = run_dir / "metrics.parquet"
    metrics = pd.read_parquet(metrics_path).to_dict("records") if metrics_path.exists() else []
    step = int(state["step"])
    log(f"pretrain: resuming {run_dir} from step {step}")
    return step, [m for m in metrics if m["step"] <= step]


def _write_metrics(run_dir: Path, metrics: list[dict]):
    tmp = run_dir / "metrics.parquet.tmp"
    pd.DataFrame(metrics).to_parquet(tmp, index=False)
    tmp.replace(run_dir / "metrics.parquet")


class _Progress:
    """A rich progress line on stderr when it is a terminal; a log line per eval otherwise."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled, self.last_logged_step = enabled, start
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            from rich.console import Console

            self._bar = Progress(TextColumn("pretrain"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._task = self._bar.add_task("train", total=total, completed=start, status="")
            self._bar.start()

    def update(self, step: int, train_loss: float, val_loss: float):
        if not self.enabled:
            return
        status = f"loss {train_loss:.4f}" + (f" val {val_loss:.4f}" if not math.isnan(val_loss) else "")
        if self._bar is not None:
            self._bar.update(self._task, completed=step, status=status)
        elif not math.isnan(val_loss):
            log(f"pretrain: step {step} {status}")

    def close(self):
        if self._bar is not None:
            self._bar.stop()
