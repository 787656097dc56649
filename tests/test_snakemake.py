"""Runs the Snakemake workflow in examples/snakemake on a small subset of the bundled example data
and checks that the merged shard outputs equal one unsharded janus run.

janus cuts its input into chunks of 512 variants / 256 regions, and --shard I/N keeps every N-th
chunk. A fast test input (40 variants, 12 regions) is a single chunk, so all shards but the
first are empty. That is kept for the regions (shard 2 of the embeddings is empty, as happens
with small real inputs), but for the variants the workflow runs a `janus` from a directory put
first on PATH that lowers the chunk size to 8 variants, so that both shards hold several chunks
and the merge really interleaves them. The unsharded scoring run uses that same `janus`, and both
unsharded runs use the workflow's --threads: the rows of a chunk are batched together, and
another chunking or thread count can change the last bits of a float.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import janus_cli.commands.embed
import janus_cli.commands.score_variants

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "examples" / "snakemake" / "Snakefile"
DATA = REPO / "examples" / "data" / "hg38_chr21"
VCF = DATA / "platinum_NA12878_chr21_22-23Mb.vcf.gz"
BED = DATA / "genomic_benchmarks_regions_22-23Mb.bed"
FASTA = DATA / "hg38_chr21_22-23Mb.fa.gz"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

N_VARIANTS = 40
N_REGIONS = 12
SHARDS = 2
VARIANTS_PER_CHUNK = 8  # 40 variants: 5 chunks, shard 1 holds 0, 2, 4 and shard 2 holds 1, 3
RECORDS_PER_CHUNK = janus_cli.commands.embed.RECORDS_PER_CHUNK  # unchanged: 12 regions are 1 chunk, shard 2 is empty
SCORE_ARGS = "--window 64 --scores llr,delta_pll"
EMBED_ARGS = "--window 128"
# metadata that may differ between a merged output and a single run of the same command
PER_RUN_METADATA = {"command_line", "janus_shard", "janus_chunks", "janus_merged_from"}

JANUS_SMALL_CHUNKS = f"""#!{sys.executable}
# janus with small chunks (tests/test_snakemake.py), so that a small input makes several shards
import janus_cli.commands.score_variants

janus_cli.commands.score_variants.VARIANTS_PER_CHUNK = {VARIANTS_PER_CHUNK}

from janus_cli.main import app

app(prog_name="janus")
"""


def _write_vcf_subset(path: Path, n: int):
    lines, records = [], 0
    with gzip.open(VCF, "rt") as vcf:
        for line in vcf:
            if not line.startswith("#"):
                if records == n:
                    break
                records += 1
            lines.append(line)
    assert records == n
    path.write_text("".join(lines))


def _run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({result.returncode})\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def _run_metadata(table):
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return {k: v for k, v in meta.items() if k not in PER_RUN_METADATA}


def _chunks(path: Path):
    return json.loads(pq.read_schema(path).metadata[b"janus_chunks"])


def _check_merged(merged: Path, single: Path, shard_outputs: list[Path], n_rows: int, per_chunk: int):
    merged_table, single_table = pq.read_table(merged), pq.read_table(single)
    assert merged_table.num_rows == n_rows
    assert merged_table.schema.remove_metadata().equals(single_table.schema.remove_metadata())
    assert merged_table.equals(single_table), f"{merged} differs from the unsharded run {single}"
    assert _run_metadata(merged_table) == _run_metadata(single_table)

    n_chunks = -(-n_rows // per_chunk)
    held = []
    for i, shard in enumerate(shard_outputs, start=1):
        assert pq.read_schema(shard).metadata[b"janus_shard"].decode() == f"{i}/{SHARDS}"
        indices = [index for index, _ in _chunks(shard)]
        assert indices == list(range(i - 1, n_chunks, SHARDS)), f"{shard}: chunks {indices}"
        assert pq.read_metadata(shard).num_rows == sum(rows for _, rows in _chunks(shard))
        held += indices
    assert sorted(held) == list(range(n_chunks))  # the shards hold different chunks, all of them
    assert _chunks(merged) == _chunks(single)
    assert json.loads(merged_table.schema.metadata[b"janus_merged_from"].decode())


def test_snakemake_workflow_matches_unsharded_runs(tmp_path):
    if not SNAKEMAKE.is_file():
        pytest.skip(f"snakemake is not installed next to {sys.executable} (pip install snakemake)")
    # the chunk size the small-chunk janus overrides must still be what janus uses
    assert janus_cli.commands.score_variants.VARIANTS_PER_CHUNK > N_VARIANTS
    assert RECORDS_PER_CHUNK > N_REGIONS

    vcf, bed = tmp_path / "subset.vcf", tmp_path / "subset.bed"
    _write_vcf_subset(vcf, N_VARIANTS)
    bed.write_text("".join(BED.read_text().splitlines(keepends=True)[:N_REGIONS]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    janus = bin_dir / "janus"
    janus.write_text(JANUS_SMALL_CHUNKS)
    janus.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), str(SNAKEMAKE.parent), os.environ.get("PATH", "")]),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}

    workdir = tmp_path / "run"
    repo_snakemake_dirs = [d for d in (REPO / ".snakemake", SNAKEFILE.parent / ".snakemake") if not d.exists()]
    _run([SNAKEMAKE, "-s", SNAKEFILE, "-c", "2", "--directory", workdir, "--show-failed-logs", "--config",
          f"shards={SHARDS}", f"vcf={vcf}", f"bed={bed}", "threads=1", "outdir=results",
          f"extra_score_args={SCORE_ARGS}", f"extra_embed_args={EMBED_ARGS}"], env=env, cwd=tmp_path)
    assert (workdir / ".snakemake").is_dir()
    assert not [d for d in repo_snakemake_dirs if d.exists()], "snakemake wrote into the repository"

    results = workdir / "results"
    # the unsharded runs, side by side, with the workflow's threads (1)
    single_scores, single_embeddings = tmp_path / "single_scores.parquet", tmp_path / "single_embeddings.parquet"
    singles = [[janus, "score-variants", vcf, "--fasta", FASTA, *SCORE_ARGS.split(), "--threads", "1", "--quiet",
                "-o", single_scores],
               [sys.executable, "-m", "janus_cli", "embed", bed, "--fasta", FASTA, *EMBED_ARGS.split(), "--threads", "1", "--quiet",
                "-o", single_embeddings]]
    processes = [subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=tmp_path) for cmd in singles]
    for cmd, process in zip(singles, processes):
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{' '.join(map(str, cmd))} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"

    _check_merged(results / "scores.parquet", single_scores,
                  [results / "shards" / f"scores.{i}-of-{SHARDS}.parquet" for i in range(1, SHARDS + 1)],
                  N_VARIANTS, VARIANTS_PER_CHUNK)
    _check_merged(results / "embeddings.parquet", single_embeddings,
                  [results / "shards" / f"embeddings.{i}-of-{SHARDS}.parquet" for i in range(1, SHARDS + 1)],
                  N_REGIONS, RECORDS_PER_CHUNK)
    shards = results / "shards"
    assert [len(_chunks(shards / f"scores.{i}-of-2.parquet")) for i in (1, 2)] == [3, 2]
    assert [pq.read_metadata(shards / f"embeddings.{i}-of-2.parquet").num_rows for i in (1, 2)] == [N_REGIONS, 0]
    assert (results / "logs" / "merge_scores.log").is_file()
