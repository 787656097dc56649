"""The janus command: each command parses options and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path

import typer

import dnalm

from .errors import UsageError, reported_errors
from .plot_cli import plot_app

app = typer.Typer(
    name="janus",
    help="Genomics with DNA language models (JanusDNA, HybriDNA, MergeDNA).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(plot_app, name="plot")


def _print_version(value: bool):
    if value:
        print(dnalm.__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Genomics with DNA language models (JanusDNA, HybriDNA, MergeDNA)."""


@app.command(
    epilog="Examples:\n\n  janus info janusdna-d144\n\n  janus info my_model_dir --json\n\n  janus info --list",
)
def info(
    model: str = typer.Argument(None, help="Model directory, shipped model name, or preset name (random weights)."),
    list_models: bool = typer.Option(False, "--list", help="List the shipped models and presets of every architecture: name, arch, kind, parameters (default: describe MODEL)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tab-separated lines (default: tab-separated)."),
):
    """Print a model's architecture, config, parameter counts and weights sha256, or list the models janus knows."""
    from .commands.model_info import describe_model, known_models

    with reported_errors():
        if list_models == (model is not None):
            raise UsageError("give a MODEL or --list")
        described = known_models() if list_models else describe_model(model)
    if as_json:
        print(json.dumps(described, indent=2))
    elif list_models:
        print("name\tarch\tkind\tparameters")
        for entry in described:
            print("\t".join(str(entry[k]) for k in ("name", "arch", "kind", "parameters")))
    else:
        for key, value in described.items():
            print(f"{key}\t{value}")


@app.command(
    "import-checkpoint",
    epilog="Example:\n\n  janus import-checkpoint last.ckpt model_config.json -o janusdna-d72/",
)
def import_checkpoint(
    ckpt: Path = typer.Argument(..., help="Checkpoint of the architecture's original code (JanusDNA: a Lightning .ckpt), read weights-only."),
    model_config: Path = typer.Argument(..., help="The original run's model config (JanusDNA: model_config.json, {\"config\": {...}})."),
    out: Path = typer.Option(..., "-o", "--out", help="Output model directory (native config.json + model.safetensors)."),
    arch: str = typer.Option("janusdna", "--arch", show_default=False, help="Architecture of the checkpoint (default: janusdna)."),
):
    """Convert a checkpoint of an architecture's original code into a native model directory."""
    with reported_errors():
        try:
            importer = dnalm.architecture(arch).import_original
        except ValueError as exc:
            raise UsageError(f"--arch: {exc}") from None
        if importer is None:
            raise UsageError(f"--arch {arch}: janus has no importer for this architecture's original checkpoints")
        model = importer(ckpt, model_config)
        dnalm.save(model, out)
    typer.echo(f"janus: wrote {out} ({model.num_parameters():,} parameters)", err=True)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus pretrain --fasta GRCh37_chr20.fa.gz --val-region 20:58,000,001-63,025,520 -o run/ --steps 2000\n\n"
        "  torchrun --nproc_per_node=2 -m janus_cli pretrain --fasta hg38.fa --val-chroms chr21 -o run/\n\n"
        "  torchrun --nproc_per_node=8 -m janus_cli pretrain --preset hybridna-7b --fsdp --fasta hg38.fa -o run7b/\n\n"
        "  janus pretrain --fasta hg38.fa -o run/ --resume\n\n"
        "  janus pretrain --fasta hg38.fa --init-from run/model --seq-len 32768 -o run32k/"
    ),
)
def pretrain(
    fasta: Path = typer.Option(..., "--fasta", help="Reference FASTA: plain, gzipped or bgzipped."),
    out: Path = typer.Option(..., "-o", "--out", help="Run directory (model/, checkpoints/, metrics.parquet)."),
    preset: str = typer.Option("janusdna-d32", help="Model preset, named after its architecture (`janus info --list`)."),
    config: Path = typer.Option(None, help="JSON model config (a native config.json: \"arch\" and its fields; no arch means janusdna); overrides --preset (default: none)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start from this model's weights instead of --preset/--config; a --seq-len longer than its max_seq_len raises it (context extension) (default: none, a new model)."),
    bed: Path = typer.Option(None, help="Sample training windows only inside these BED intervals (default: the whole genome)."),
    val_chroms: list[str] = typer.Option([], "--val-chroms", help="Hold out these contigs for validation (repeatable) (default: none)."),
    val_bed: Path = typer.Option(None, help="Hold out these BED intervals for validation (default: none)."),
    val_regions: list[str] = typer.Option([], "--val-region", help="Hold out a region chr:beg-end, 1-based (repeatable) (default: none)."),
    seq_len: int = typer.Option(None, help="Window length in bp (default: the model's max_seq_len)."),
    batch_size: int = typer.Option(8, help="Sequences per process per micro-step."),
    grad_accum: int = typer.Option(1, help="Micro-steps per optimizer step."),
    steps: int = typer.Option(1000, help="Optimizer steps in total."),
    lr: float = typer.Option(None, help="Peak learning rate (default: the architecture paper's, scaled by sqrt(batch tokens / its batch tokens): janusdna 8e-3 at 2^20, hybridna 1e-3 at 2^19, mergedna 1e-3 at 4,096)."),
    min_lr: float = typer.Option(1e-4, help="Learning rate at the last step (cosine decay target)."),
    seed: int = typer.Option(0, help="Seed for initialisation and window sampling."),
    max_n_frac: float = typer.Option(0.1, help="Skip windows with a larger fraction of N."),
    rc_augment: bool = typer.Option(True, help="Reverse-complement half of the training windows."),
    save_every: int = typer.Option(500, help="Checkpoint every this many steps (and at the end)."),
    eval_every: int = typer.Option(100, help="Validate every this many steps (and at the end)."),
    val_windows: int = typer.Option(64, help="Number of held-out windows per validation."),
    log_every: int = typer.Option(10, help="Append a metrics row every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
    fsdp: bool = typer.Option(False, "--fsdp", show_default=False, help="Under torchrun, shard weights, gradients and optimizer state over the processes (FSDP) instead of replicating them (DDP), for models larger than one device; checkpoints are written unsharded (default: DDP)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    """Pretrain a model on a genome with its architecture's objective (JanusDNA: every base predicted from all others)."""
    import sys

    from .commands.pretrain import PretrainOptions, pretrain as run_pretrain

    opts = PretrainOptions(
        fasta=fasta, run_dir=out, preset=preset, config=config, init_from=init_from, bed=bed, val_chroms=val_chroms, val_bed=val_bed,
        val_regions=val_regions, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, steps=steps, lr=lr,
        min_lr=min_lr, seed=seed, max_n_frac=max_n_frac, rc_augment=rc_augment, save_every=save_every,
        eval_every=eval_every, val_windows=val_windows, log_every=log_every, resume=resume, fsdp=fsdp, device=device, threads=threads,
        quiet=quiet,
    )
    with reported_errors():
        run_pretrain(opts, argv=["janus", *sys.argv[1:]])


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus finetune train.csv --val dev.csv --test test.csv --model janusdna-d72 -o promoters/\n\n"
        "  janus finetune peaks.bed --fasta hg38.fa --label-col 7 --model my_model/ --freeze-backbone -o probe/\n\n"
        "  janus finetune expr.parquet --regression --model janusdna-d32 --max-steps 200 -o scratch/\n\n"
        "  janus finetune tata_train.csv --generative --val tata_dev.csv --model my_hybridna/ --lr 1e-4 -o tata_generator/\n\n"
        "  janus finetune eqtl.vcf.gz --label-field EQTL --fasta hg38.fa --holdout-chroms chr8,chr9 --window 1024 -o eqtl_head/"
    ),
)
def finetune(
    train: Path = typer.Argument(..., help="Training data: CSV/TSV/Parquet with sequence and label columns, or BED with --fasta, or labelled variants with --fasta: a VCF/BCF with --label-field, or a table with chrom, pos (1-based), ref, alt, label and an optional split (train/val/test) column (told apart by content)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output model directory (backbone, head.safetensors, head.json, metrics.json)."),
    model: str = typer.Option(
        dnalm.DEFAULT_MODEL, "--model", show_default=False,
        help="Start from a model directory, a shipped model name, or a preset name (random init) of any architecture (default: the shipped default model).",
    ),
    val: Path = typer.Option(None, "--val", help="Validation data; selects the best epoch and stops early (default: none, keep the last epoch)."),
    test: Path = typer.Option(None, "--test", help="Test data; its metrics go to metrics.json (default: none)."),
    seq_col: str = typer.Option(None, help="Sequence column of table inputs (default: sequence or seq)."),
    label_col: str = typer.Option(None, help="Label column (default: label); for BED a 1-based column number or name."),
    fasta: Path = typer.Option(None, help="Reference FASTA for BED inputs (strand - is reverse-complemented) (default: none)."),
    regression: bool = typer.Option(False, "--regression", help="Numeric labels: one output trained with MSE."),
    generative: bool = typer.Option(False, "--generative", help="Label-conditioned generation instead of a head, for a causal model (hybridna): each label becomes prompt tokens (one per position and character, new embedding rows) and the model learns to generate its sequences; the loss covers the bases only, --val keeps the epoch with the best next-base accuracy; the output is a model for janus generate --label (default: off)."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="Train only the linear head (a linear probe)."),
    lora_rank: int = typer.Option(None, "--lora-rank", show_default=False, help="Train low-rank adapters (LoRA) of this rank instead of the whole backbone, plus the head; the saved backbone has them merged in. Targets: every linear layer of the residual blocks (janusdna, hybridna); the attention projections of the Local and Latent Encoder (mergedna) (default: off, the whole backbone trains)."),
    lora_alpha: float = typer.Option(None, "--lora-alpha", show_default=False, help="LoRA scale numerator: adapters add (alpha / rank) B A (default: 2 x --lora-rank)."),
    pooling: str = typer.Option(None, "--pooling", show_default=False,
                                help="How the backbone's states are pooled for the head: one of the architecture's poolings, e.g. mean, max, center, last, and echo for hybridna (default: the architecture's own: mean for janusdna and mergedna, echo for hybridna)."),
    epochs: int = typer.Option(10, help="Passes over the training data."),
    batch_size: int = typer.Option(32, help="Sequences per step (all of one length)."),
    lr: float = typer.Option(None, help="Peak learning rate, after linear warm-up, before cosine decay (default: 5e-4; 1e-3 with --lora-rank; 2e-3 with --freeze-backbone)."),
    patience: int = typer.Option(3, help="With --val, stop after this many epochs without improvement."),
    max_steps: int = typer.Option(None, help="Stop after this many steps, for quick runs (default: no limit)."),
    seed: int = typer.Option(0, help="Seed for the head (and a preset's) initialisation, shuffling and augmentation."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    label_field: str = typer.Option(None, "--label-field", show_default=False, help="Labelled variants in a VCF: the INFO field holding each variant's label (default: none)."),
    variant_features: str = typer.Option("pair", "--variant-features", show_default=False, help="Labelled variants: pair pools the REF and ALT windows and the head sees [ref, alt, alt - ref], so it learns what the change does; alt pools the ALT window alone, as the original JanusDNA eQTL code does (default: pair)."),
    window: int = typer.Option(None, "--window", show_default=False, help="Labelled variants: window length in bp, anchored as score-variants anchors it (default: 256)."),
    edge: str = typer.Option("pad", "--edge", show_default=False, help="Labelled variants: windows past a contig end: pad (with N), shift or skip (default: pad)."),
    check_ref: str = typer.Option("skip", "--check-ref", show_default=False, help="Labelled variants whose REF does not match the reference: skip, warn (and use them), or error (default: skip)."),
    max_n_frac: float = typer.Option(0.1, "--max-n-frac", show_default=False, help="Labelled variants: skip those whose window has a larger fraction of N (default: 0.1)."),
    chrom_alias: Path = typer.Option(None, "--chrom-alias", show_default=False, help="Labelled variants: TSV of input chromosome name, reference contig name (default: none)."),
    holdout_chroms: str = typer.Option(None, "--holdout-chroms", show_default=False, help="Labelled variants: comma-separated chromosomes whose training variants become the test set, the split DNALongBench uses (default: none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    """Finetune a model for sequence classification (or regression): its pooled embedding + a linear head; or, with --generative, to generate sequences given their label."""
    from .commands.finetune import FinetuneOptions, finetune as run_finetune

    opts = FinetuneOptions(
        train=train, out=out, model=model, val=val, test=test, seq_col=seq_col, label_col=label_col, fasta=fasta,
        regression=regression, generative=generative, freeze_backbone=freeze_backbone, lora_rank=lora_rank,
        lora_alpha=lora_alpha, pooling=pooling, epochs=epochs, batch_size=batch_size, lr=lr,
        patience=patience, max_steps=max_steps, seed=seed, device=device, threads=threads, quiet=quiet,
        label_field=label_field, variant_features=variant_features, window=window, edge=edge, check_ref=check_ref,
        max_n_frac=max_n_frac, chrom_alias=chrom_alias,
        holdout_chroms=[c for c in (holdout_chroms or "").split(",") if c],
    )
    with reported_errors():
        run_finetune(opts)


# arguments and options shared by the inference commands (embed, likelihood, score-variants, predict)
RECORDS = typer.Argument(None, help="BED3-BED6+ regions of the reference, or sequences: a FASTA of records or a CSV/TSV/Parquet table with a sequence column; plain or gzipped, - reads stdin; the kind is told from the content.")
SEQ_COL = typer.Option(None, "--seq-col", show_default=False, help="Sequence column of a table input (default: sequence or seq).")
REGIONS = typer.Option([], "-r", "--region", show_default=False,
                       help="A region chr:beg-end, 1-based inclusive (repeatable) (default: none).")
TILE_OVERLAP = typer.Option(None, "--tile-overlap", show_default=False,
                            help="Overlap in bp of the tiles of regions longer than the model (default: a quarter of its max_seq_len).")
OUT = typer.Option(None, "-o", "--out", show_default=False,
                   help="Output file: .parquet (default), .tsv, or - for TSV on stdout (default: TSV on stdout).")
FASTA = typer.Option(None, "--fasta", show_default=False,
                     help="Reference FASTA, plain or bgzipped (default: $JANUS_FASTA, else fasta = in ~/.config/janus/config.toml).")
MODEL = typer.Option(None, "--model", show_default=False,
                     help="Model directory or shipped model name, of any architecture (default: the shipped default model).")
EDGE = typer.Option("pad", "--edge", show_default=False,
                    help="Windows past a contig end: pad (with N), shift (inside the contig) or skip (default: pad).")
MAX_N_FRAC = typer.Option(0.1, "--max-n-frac", show_default=False,
                          help="Skip records whose window has a larger fraction of N (default: 0.1).")
RC = typer.Option("avg", "--rc", show_default=False,
                  help="avg: average both strands; none: forward strand only; both: also write each strand (default: avg). For a causal model the reverse strand's predictions use the right context, so avg combines a left-context and a right-context prediction of each base.")
CHROM_ALIAS = typer.Option(None, "--chrom-alias", show_default=False,
                           help="TSV of input chromosome name, reference contig name (default: none; chr20/20 and chrM/MT match anyway).")
BATCH_SIZE = typer.Option(16, "--batch-size", show_default=False, help="Windows per forward pass (default: 16).")
DEVICE = typer.Option("auto", "--device", show_default=False, help="auto, cpu or cuda (default: auto).")
DTYPE = typer.Option("float32", "--dtype", show_default=False, help="float32 or bfloat16 (autocast) (default: float32).")
THREADS = typer.Option(None, "--threads", show_default=False, help="CPU threads for torch (default: torch's choice).")
SHARD = typer.Option(None, "--shard", show_default=False,
                     help="Process shard I of N (I/N, 1-based): every N-th chunk of records, for array jobs; gather with janus merge (default: all).")
RESUME = typer.Option(False, "--resume", show_default=False,
                      help="Continue an interrupted run of the same command from its finished chunks (default: start over).")
QUIET = typer.Option(False, "--quiet", "-q", show_default=False, help="No progress bar (default: a bar when stderr is a terminal).")


def _argv() -> list[str]:
    import sys

    return ["janus", *sys.argv[1:]]


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus embed peaks.bed --fasta hg38.fa -o peaks.emb.parquet\n\n"
        "  janus embed -r chr20:30,000,001-30,001,000 --window 1024 -o - | cut -f1-5\n\n"
        "  zcat exons.bed.gz | janus embed - --chrom-alias names.tsv --pooling center -o exons.parquet\n\n"
        "  janus embed designed_promoters.fa -o promoters.emb.parquet"
    ),
)
def embed(
    inputs: str = RECORDS,
    regions: list[str] = REGIONS,
    seq_col: str = SEQ_COL,
    out: str = OUT,
    fasta: Path = FASTA,
    model: str = MODEL,
    window: int = typer.Option(None, "--window", help="Embed a window of this many bp centred on each region (default: the region itself).", show_default=False),
    edge: str = EDGE,
    max_n_frac: float = MAX_N_FRAC,
    tile_overlap: int = TILE_OVERLAP,
    pooling: str = typer.Option(None, "--pooling", help="Pool positions by mean, max, center or last, or a pooling of the architecture's own such as hybridna's echo (default: the architecture's own: mean for janusdna and mergedna, echo for hybridna).", show_default=False),
    per_position: bool = typer.Option(False, "--per-position", help="Keep one vector per base instead of pooling, for short regions (default: pool).", show_default=False),
    rc: str = RC,
    chrom_alias: Path = CHROM_ALIAS,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    shard: str = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
):
    """Embed genomic regions or sequences: one pooled hidden-state vector per record."""
    from .commands.embed import EmbedOptions, embed as run_embed

    opts = EmbedOptions(
        inputs=inputs, regions=regions, seq_col=seq_col, out=out, fasta=fasta, model=model, window=window, edge=edge,
        max_n_frac=max_n_frac, tile_overlap=tile_overlap, pooling=pooling, per_position=per_position, rc=rc,
        chrom_alias=chrom_alias, batch_size=batch_size, device=device, dtype=dtype, threads=threads,
        shard=shard, resume=resume, quiet=quiet,
    )
    with reported_errors():
        run_embed(opts, argv=_argv())


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus likelihood -r chr21:22,000,001-22,002,000 --fasta hg38.fa -o ll.parquet\n\n"
        "  janus likelihood promoters.bed --mutagenesis -o ism.parquet\n\n"
        "  janus likelihood -r chr21:22,000,001-22,100,000 --track entropy -o entropy.bedgraph\n\n"
        "  janus likelihood generated.fa --mutagenesis -o generated.ism.parquet"
    ),
)
def likelihood(
    inputs: str = RECORDS,
    regions: list[str] = REGIONS,
    seq_col: str = SEQ_COL,
    out: str = typer.Option(None, "-o", "--out", show_default=False,
                            help="Output file: .parquet (default), .tsv, .bedgraph (one --track), or - for TSV on stdout (default: TSV on stdout)."),
    fasta: Path = FASTA,
    model: str = MODEL,
    window: int = typer.Option(None, "--window", help="Score a window of this many bp centred on each region (default: the region itself).", show_default=False),
    edge: str = EDGE,
    max_n_frac: float = MAX_N_FRAC,
    tile_overlap: int = TILE_OVERLAP,
    mutagenesis: bool = typer.Option(False, "--mutagenesis", help="Add llr_A..llr_T for every base at every position: log P(alt) - log P(ref) from the same pass for a model that predicts each base from all the others (janusdna) or with the base masked (mergedna); for a causal model (hybridna) the full-window log-likelihood ratio log p(mutated window) - log p(window), which costs three forward passes per base (default: off).", show_default=False),
    track: str = typer.Option("logp_ref", "--track", help="The column a .bedgraph output holds, e.g. logp_ref, entropy, llr_A (default: logp_ref).", show_default=False),
    rc: str = RC,
    chrom_alias: Path = CHROM_ALIAS,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    shard: str = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
):
    """Per-base log-probabilities of A, C, G, T and entropy at every position of regions or sequences (and optionally a saturation mutagenesis map). What each prediction saw depends on the architecture (janusdna: every other base of the window; hybridna: the bases to its left; mergedna: every other base with the base itself replaced by [MASK], one forward pass per base) and is recorded in the output's metadata (prediction_context)."""
    from .commands.likelihood import LikelihoodOptions, likelihood as run_likelihood

    opts = LikelihoodOptions(
        inputs=inputs, regions=regions, seq_col=seq_col, out=out, fasta=fasta, model=model, window=window, edge=edge,
        max_n_frac=max_n_frac, tile_overlap=tile_overlap, mutagenesis=mutagenesis, track=track, rc=rc,
        chrom_alias=chrom_alias, batch_size=batch_size, device=device, dtype=dtype, threads=threads,
        shard=shard, resume=resume, quiet=quiet,
    )
    with reported_errors():
        run_likelihood(opts, argv=_argv())


@app.command(
    "score-variants",
    epilog=(
        "Examples:\n\n"
        "  janus score-variants eqtl.vcf | head\n\n"
        "  janus score-variants calls.vcf.gz --fasta hg38.fa --scores llr,delta_pll -o scores.parquet\n\n"
        "  bcftools view -r chr21 calls.bcf | janus score-variants - --window 512 -o chr21.scores.vcf.gz\n\n"
        "  janus score-variants calls.vcf.gz --model promoters/ -o promoter_effects.parquet   (finetuned head)\n\n"
        "  janus score-variants calls.vcf.gz --model eqtl_head/ --window 1024 -o eqtl_scores.vcf.gz   (variant head)"
    ),
)
def score_variants(
    vcf: str = typer.Argument(..., help="Variants: VCF (plain or bgzipped) or BCF; - reads stdin."),
    region: str = typer.Option(None, "-r", "--region", show_default=False,
                               help="Only the records overlapping chr:beg-end (1-based inclusive), like bcftools view -r; needs an indexed VCF/BCF (default: all records)."),
    out: str = typer.Option(None, "-o", "--out", show_default=False,
                            help="Output file: .parquet (default), .tsv, .vcf.gz (bgzipped, tabix-indexed, scores as INFO), or - for TSV on stdout (default: TSV on stdout)."),
    fasta: Path = FASTA,
    model: str = typer.Option(None, "--model", show_default=False,
                              help="Model directory or shipped model name; a janus finetune directory adds its head's probabilities: prob_<label>_ref/_alt/_diff for a sequence head, prob_<label> per variant for a head finetuned on labelled variants with --variant-features pair (default: the shipped default model)."),
    window: int = typer.Option(None, "--window", show_default=False,
                               help="Length in bp of the reference and alternative windows around each variant (default: 256, at most the model's max_seq_len)."),
    scores: str = typer.Option(",".join(("llr", "ref_logp", "alt_logp", "delta_pll", "emb_cosine", "emb_l2")), "--scores", show_default=False,
                               help="Comma-separated scores among llr, ref_logp, alt_logp, delta_pll, emb_cosine, emb_l2 (default: all)."),
    check_ref: str = typer.Option("skip", "--check-ref", show_default=False,
                                  help="When REF differs from the reference: skip the variant (skip_reason ref_mismatch), warn and score it, or error (default: skip)."),
    edge: str = EDGE,
    max_n_frac: float = MAX_N_FRAC,
    rc: str = RC,
    chrom_alias: Path = CHROM_ALIAS,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    shard: str = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
):
    """Score VCF variants: llr, ref/alt log-probabilities, delta pseudo-log-likelihood and embedding shifts. For mergedna the allele's bases are replaced by [MASK] and predicted in one pass (one pass serves an SNV's REF and ALT); delta_pll is then the pseudo-likelihood of each allele's masked span."""
    from .commands.score_variants import ScoreOptions, score_variants as run_score_variants

    opts = ScoreOptions(
        vcf=vcf, region=region, out=out, fasta=fasta, model=model, window=window, scores=[s.strip() for s in scores.split(",") if s.strip()],
        check_ref=check_ref, edge=edge, max_n_frac=max_n_frac, rc=rc, chrom_alias=chrom_alias, batch_size=batch_size,
        device=device, dtype=dtype, threads=threads, shard=shard, resume=resume, quiet=quiet,
    )
    with reported_errors():
        run_score_variants(opts, argv=_argv())


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus merge scores.shard-*.parquet -o scores.parquet\n\n"
        "  for i in 1 2 3 4; do janus embed regions.bed --shard $i/4 -o emb.$i.parquet; done; janus merge emb.?.parquet -o emb.parquet"
    ),
)
def merge(
    shards: list[Path] = typer.Argument(..., help="The Parquet outputs of one run's --shard I/N runs, in any order."),
    out: str = typer.Option(None, "-o", "--out", show_default=False,
                            help="Output file: .parquet (default) or .tsv, or - for TSV on stdout (default: TSV on stdout)."),
):
    """Gather shard outputs into one file in input order, checking they come from one run."""
    from .commands.merge import merge as run_merge

    with reported_errors():
        run_merge(shards, out)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus predict test.csv --model promoters/ -o predictions.parquet\n\n"
        "  janus predict peaks.bed --fasta hg38.fa --model promoters/ --window 300 -o peaks.pred.parquet\n\n"
        "  janus predict -r chr21:22,010,001-22,010,300 --model promoters/ | cut -f1-8"
    ),
)
def predict(
    inputs: str = RECORDS,
    regions: list[str] = REGIONS,
    seq_col: str = SEQ_COL,
    model: str = typer.Option(..., "--model", help="Finetuned model directory (from janus finetune)."),
    out: str = OUT,
    fasta: Path = FASTA,
    window: int = typer.Option(None, "--window", help="Predict on a window of this many bp centred on each record (default: the record itself).", show_default=False),
    edge: str = EDGE,
    max_n_frac: float = MAX_N_FRAC,
    tile_overlap: int = TILE_OVERLAP,
    rc: str = typer.Option("avg", "--rc", show_default=False, help="avg averages both strands, none uses the record's strand only (default: avg)."),
    chrom_alias: Path = CHROM_ALIAS,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    threads: int = THREADS,
    shard: str = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
):
    """Predict class probabilities (prob_<label>, pred_label) or values (prediction) per region or sequence."""
    from .commands.predict import predict as run_predict
    from .engine.regions import RecordOptions

    opts = RecordOptions(
        inputs=inputs, regions=regions, seq_col=seq_col, out=out, fasta=fasta, model=model, window=window, edge=edge,
        max_n_frac=max_n_frac, tile_overlap=tile_overlap, rc=rc, chrom_alias=chrom_alias, batch_size=batch_size,
        device=device, dtype=dtype, threads=threads, shard=shard, resume=resume, quiet=quiet,
    )
    with reported_errors():
        run_predict(opts, argv=_argv())


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus generate --model tata_generator/ --label 1 --length 70 --beam 200 -o promoters.beam.parquet\n\n"
        "  janus generate --model tata_generator/ --label 0 --label 1 --length 70 --sample -n 200 --top-p 0.95 --seed 1 -o sampled.fa\n\n"
        "  janus generate --model my_hybridna/ --prompt TATAAA --length 100 --sample -n 10 --temperature 0.8 | head -4\n\n"
        "  janus generate --model enhancers/ --label 300 --length 200 --beam 2500 -n 600 -o hepg2.fa"
    ),
)
def generate(
    model: str = typer.Option(..., "--model", help="A causal model directory (HybriDNA), for --label one written by janus finetune --generative."),
    length: int = typer.Option(..., "--length", "-L", help="Bases to generate per sequence (fixed length)."),
    n: int = typer.Option(None, "-n", show_default=False, help="Sequences per label (default: the beam width with --beam; required with --sample)."),
    labels: list[str] = typer.Option([], "--label", show_default=False, help="Condition on this label, one prompt token per character; repeatable, N sequences each (default: no label)."),
    prompt: str = typer.Option(None, "--prompt", show_default=False, help="Bases the sequences continue (after the label's tokens); not part of the output sequence (default: none)."),
    beam: int = typer.Option(None, "--beam", show_default=False, help="Beam search of this width: the best sequences by total log-probability (default: off; give --beam or --sample)."),
    sample: bool = typer.Option(False, "--sample", show_default=False, help="Draw sequences at random from the model (default: off; give --beam or --sample)."),
    temperature: float = typer.Option(1.0, "--temperature", show_default=False, help="With --sample, divide the log-probabilities by this (default: 1.0)."),
    top_k: int = typer.Option(None, "--top-k", show_default=False, help="With --sample, draw among the k most likely bases only (default: all 4)."),
    top_p: float = typer.Option(None, "--top-p", show_default=False, help="With --sample, draw among the fewest most likely bases whose probability reaches p (default: 1, all)."),
    seed: int = typer.Option(0, "--seed", show_default=False, help="Seed of --sample's draws; the same seed and --batch-size give the same sequences (default: 0)."),
    out: str = typer.Option(None, "-o", "--out", show_default=False, help="Output file: .parquet (default), .fa/.fasta (header: id label log_likelihood rank), .tsv, or - for FASTA on stdout (default: FASTA on stdout)."),
    batch_size: int = typer.Option(64, "--batch-size", show_default=False, help="With --sample, sequences decoded together (default: 64)."),
    device: str = DEVICE,
    threads: int = THREADS,
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default=False, help="No progress output (default: progress on stderr when it is a terminal)."),
):
    """Generate DNA with a causal model by beam search or sampling (A/C/G/T only, fixed length), optionally conditioned on a label or a prompt."""
    from .commands.generate import GenerateOptions, generate as run_generate

    opts = GenerateOptions(
        model=model, length=length, n=n, labels=labels, prompt=prompt, beam=beam, sample=sample,
        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, out=out, batch_size=batch_size,
        device=device, threads=threads, quiet=quiet,
    )
    with reported_errors():
        run_generate(opts, argv=_argv())


@app.command(
    epilog=(
        "Examples:\n\n"
        "  janus tokenize regions.bed --fasta hg38.fa --model mergedna_model/ --class-field 1,3 -o tokens.parquet\n\n"
        "  janus tokenize -r chr21:22,000,001-22,010,000 --model mergedna_model/ -o tokens.bed\n\n"
        "  janus tokenize designed_promoters.fa --model mergedna_model/ -o - | head\n\n"
        "  janus plot tokens tokens.parquet --by class -o token_lengths.png"
    ),
)
def tokenize(
    inputs: str = RECORDS,
    regions: list[str] = REGIONS,
    seq_col: str = SEQ_COL,
    out: str = typer.Option(None, "-o", "--out", show_default=False,
                            help="Output file: .parquet (default), .tsv, .bed (one BED9 line per token, for genome browsers), or - for TSV on stdout (default: TSV on stdout)."),
    fasta: Path = FASTA,
    model: str = typer.Option(None, "--model", show_default=False,
                              help="Model directory or shipped model name with a learned tokenization (MergeDNA) (default: the first shipped such model)."),
    window: int = typer.Option(None, "--window", help="Tokenize a window of this many bp centred on each region (default: the region itself).", show_default=False),
    edge: str = EDGE,
    max_n_frac: float = MAX_N_FRAC,
    tile_overlap: int = TILE_OVERLAP,
    compression_ratio: float = typer.Option(None, "--compression-ratio", show_default=False,
                                            help="Tokens per base, in (0, 1] (default: the model's own, 0.5 for MergeDNA)."),
    class_field: str = typer.Option(None, "--class-field", show_default=False,
                                    help="Summarise (and fill the class column) by these 1-based fields of the ':'-separated record name, e.g. 3 or 1,3 for Genomic Benchmarks names task:split:class:id (default: the whole name)."),
    chrom_alias: Path = CHROM_ALIAS,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    threads: int = THREADS,
    shard: str = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
):
    """Segment regions or sequences into a model's learned tokens (MergeDNA): one row per token, and token lengths per class on stderr."""
    from .commands.tokenize import TokenizeOptions, tokenize as run_tokenize

    opts = TokenizeOptions(
        inputs=inputs, regions=regions, seq_col=seq_col, out=out, fasta=fasta, model=model, window=window, edge=edge,
        max_n_frac=max_n_frac, tile_overlap=tile_overlap, compression_ratio=compression_ratio, class_field=class_field,
        chrom_alias=chrom_alias, batch_size=batch_size, device=device, threads=threads, shard=shard, resume=resume,
        quiet=quiet,
    )
    with reported_errors():
        run_tokenize(opts, argv=_argv())
