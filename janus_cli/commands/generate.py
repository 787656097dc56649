"""`janus generate`: DNA sequences from a causal model (HybriDNA), by beam search or sampling,
unconditioned, after a prompt of bases (--prompt), or conditioned on a label (--label) of a model
fine-tuned with `janus finetune --generative`.

Decoding (dnalm.generation): A/C/G/T only, renormalised over the four bases; every sequence has
exactly --length bases; the prompt runs through the model's cache once and each base after that
is one cached step.
- --beam B: beam search of width B, ranked by total log-probability (no length penalty); -n N
  (default B) keeps the N best. Deterministic.
- --sample: -n N independent draws, with --temperature, --top-k and --top-p; the same --seed (and
  --batch-size) gives the same sequences.
A label is one character per condition and becomes one prompt token per (position, character)
(dnalm.prompts); --label can be repeated, and each label gets its own N sequences.

Output: one row per sequence, grouped by label (in the order given) and ordered by rank within a
label: id, label (with --label), prompt (with --prompt), sequence (the generated bases only, not
the prompt), log_likelihood (natural log: the sum of the generated bases' log-probabilities under
the ACGT-renormalised distribution given the label and prompt, with no temperature, top-k or
top-p), rank (1 = highest log_likelihood; for samples the draws are ranked the same way).
- .parquet (and any other name): Parquet, with the run's provenance as key-value metadata;
- .fa / .fasta / .fna: FASTA, `>ID label=... log_likelihood=... rank=...` then the sequence on one line;
- .tsv: a header line and tab-separated rows;
- - (the default): FASTA on stdout, so that it pipes into FASTA tools and janus likelihood -.
Files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import torch

import dnalm
from dnalm import generation, prompts
from dnalm.tokenizer import N

from ..engine.runtime import log, resolve_device, set_threads
from ..engine.streaming import Progress, is_stdout, write_output_file, write_parquet, write_tsv_file
from ..errors import DataError, UsageError
from ..io.sequence_output import write_fasta

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")


@dataclass
class GenerateOptions:
    model: str
    length: int
    n: int | None = None  # default: the beam width with --beam; required with --sample
    labels: list[str] = field(default_factory=list)
    prompt: str | None = None
    beam: int | None = None
    sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    out: str | None = None  # None or '-': FASTA on stdout
    batch_size: int = 64
    device: str = "auto"
    threads: int | None = None
    quiet: bool = False


def check_options(opts: GenerateOptions) -> int:
    """Refuse impossible settings; returns the number of sequences per label."""
    if (opts.beam is None) == (not opts.sample):
        raise UsageError("choose one decoding: --beam B (beam search) or --sample")
    if opts.length < 1:
        raise UsageError(f"--length {opts.length}: must be at least 1")
    if opts.n is not None and opts.n < 1:
        raise UsageError(f"-n {opts.n}: must be at least 1")
    if opts.beam is not None:
        if opts.beam < 1:
            raise UsageError(f"--beam {opts.beam}: must be at least 1")
        for name, value, default in (("--temperature", opts.temperature, 1.0), ("--top-k", opts.top_k, None),
                                     ("--top-p", opts.top_p, None)):
            if value != default:
                raise UsageError(f"{name} applies to --sample only; beam search ranks by the model's own probabilities")
        if opts.n is not None and opts.n > opts.beam:
            raise UsageError(f"-n {opts.n}: beam search of width {opts.beam} returns at most {opts.beam} sequences; "
                             f"raise --beam")
        return opts.n or opts.beam
    if opts.n is None:
        raise UsageError("--sample needs -n, the number of sequences to draw per label")
    if not opts.temperature > 0:
        raise UsageError(f"--temperature {opts.temperature}: must be positive")
    if opts.top_k is not None and opts.top_k < 1:
        raise UsageError(f"--top-k {opts.top_k}: must be at least 1")
    if opts.top_p is not None and not 0 < opts.top_p <= 1:
        raise UsageError(f"--top-p {opts.top_p}: must be in (0, 1]")
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size {opts.batch_size}: must be at least 1")
    return opts.n


def load_generator_model(model_ref: str, device: torch.device) -> dnalm.DNALM:
    """The model, refused (exit 2, naming its architecture) unless it can generate."""
    model = dnalm.load(model_ref, device=device)
    dnalm.require(model, "generation", "janus generate")
    return model


def prompt_base_ids(prompt: str | None) -> torch.Tensor:
    if not prompt:
        return torch.empty(0, dtype=torch.long)
    try:
        ids = dnalm.encode(prompt)
    except ValueError as exc:
        raise UsageError(f"--prompt: {exc}") from None
    if (ids == N).any():
        raise UsageError("--prompt: give A, C, G and T only (the model generates after these exact bases)")
    return ids


def generate(opts: GenerateOptions, argv: list[str] | None = None) -> pa.Table:
    """Generate the sequences, write them to opts.out (or stdout) and return them as a table."""
    per_label = check_options(opts)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model = load_generator_model(opts.model, device)
    if len(set(opts.labels)) != len(opts.labels):
        raise UsageError("--label: give each label once")
    bases = prompt_base_ids(opts.prompt)
    conditions = []  # (label or None, prompt ids)
    for label in opts.labels or [None]:
        label_ids = torch.empty(0, dtype=torch.long)
        if label is not None:
            try:
                label_ids = prompts.label_prompt_ids(model, label)
            except prompts.LabelError as exc:
                raise UsageError(f"--label: {exc}") from None
        conditions.append((label, torch.cat([label_ids, bases])))

    say = (lambda message: None) if opts.quiet else log
    mode = f"beam search (width {opts.beam})" if opts.beam else "sampling"
    say(f"janus: generate: {per_label} sequence(s) of {opts.length} bp per label for {len(conditions)} label(s), "
        f"{mode}, model {model.config.name} ({model.arch})")
    generator = torch.Generator().manual_seed(opts.seed)
    tables = []
    with Progress(per_label * len(conditions), opts.quiet) as progress:
        for label, prompt_ids in conditions:
            step = lambda n_bases: progress.advance(0, n_bases)  # noqa: E731
            if opts.beam:
                found = generation.beam_search(model, prompt_ids, opts.length, opts.beam, progress=step)
                keep = torch.arange(per_label)
            else:
                found = generation.sample(model, prompt_ids, opts.length, per_label, opts.temperature, opts.top_k,
                                          opts.top_p, generator=generator, batch_size=opts.batch_size, progress=step)
                keep = torch.sort(found.log_likelihood, descending=True, stable=True).indices
            progress.advance(per_label, 0)
            tables.append(result_table(found, keep, label, opts))
    table = pa.concat_tables(tables)
    write(table, opts, metadata(opts, model, argv))
    if not is_stdout(opts.out):
        say(f"janus: generate: wrote {table.num_rows} sequences to {opts.out}")
    return table


def result_table(found: generation.Generated, keep: torch.Tensor, label: str | None,
                 opts: GenerateOptions) -> pa.Table:
    sequences = found.sequences()
    ranks = list(range(1, len(keep) + 1))
    stem = "gen" if label is None else f"label_{label}"
    columns = {"id": [f"{stem}_{rank}" for rank in ranks]}
    if opts.labels:
        columns["label"] = [label] * len(keep)
    if opts.prompt:
        columns["prompt"] = [opts.prompt.upper()] * len(keep)
    columns["sequence"] = [sequences[i] for i in keep.tolist()]
    columns["log_likelihood"] = found.log_likelihood[keep].tolist()
    columns["rank"] = ranks
    schema = pa.schema([pa.field(name, pa.float64() if name == "log_likelihood" else
                                 pa.int32() if name == "rank" else pa.string()) for name in columns])
    return pa.table(columns, schema=schema)


def metadata(opts: GenerateOptions, model: dnalm.DNALM, argv: list[str] | None) -> dict[str, str]:
    settings = {"decoding": "beam" if opts.beam else "sample", "beam_width": opts.beam, "length": opts.length,
                "labels": ",".join(opts.labels) or "none", "prompt": opts.prompt or "none"}
    if opts.sample:
        settings |= {"temperature": opts.temperature, "top_k": opts.top_k, "top_p": opts.top_p, "seed": opts.seed,
                     "batch_size": opts.batch_size}
    return {
        "janus_version": dnalm.__version__,
        "model": str(opts.model),
        "model_name": model.config.name,
        "model_arch": model.arch,
        "model_weights_sha256": dnalm.weights_sha256(opts.model),
        "label_tokenisation": prompts.TOKENISATION,
        "log_likelihood": "sum of the generated bases' natural-log probabilities, renormalised over A/C/G/T, "
                          "given the label and prompt",
        **{key: str(value) for key, value in settings.items()},
        "command_line": shlex.join(argv or ["janus", "generate"]),
    }


def write(table: pa.Table, opts: GenerateOptions, meta: dict[str, str]):
    if is_stdout(opts.out):
        write_fasta(sys.stdout, [table])
        return
    out = Path(opts.out)
    name = out.name.lower()
    if not out.parent.is_dir():
        raise DataError(f"{out}: the directory {out.parent} does not exist")
    if name.endswith(FASTA_SUFFIXES):
        def write_file(temp: Path):
            with open(temp, "w") as stream:
                write_fasta(stream, [table])

        write_output_file(out, write_file)
    elif name.endswith(".tsv"):
        write_tsv_file(out, [table], table.schema, meta)
    else:
        write_parquet(out, [table], table.schema, meta)
