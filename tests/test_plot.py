"""janus plot: every command drawn from inputs built with the shipped model on real hg38 chr21
sequence, NA12878 variants and Genomic Benchmarks regions, written in the schemas of the janus
commands that make them; images checked to be valid files of the requested format."""

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
import torch
from typer.testing import CliRunner

import janusdna
from janus_cli.commands import pretrain as pt
from janus_cli.io import windows
from janus_cli.io.fasta import Reference
from janus_cli.io.intervals import read_bed
from janus_cli.commands.plot import information_content, variant_class
from janus_cli.plot_cli import plot_app

EXAMPLES = Path(__file__).parent.parent / "examples" / "data" / "hg38_chr21"
FASTA = EXAMPLES / "hg38_chr21_22-23Mb.fa.gz"  # contig chr21, N before 22,000,000
VCF = EXAMPLES / "platinum_NA12878_chr21_22-23Mb.vcf.gz"
BENCHMARK_REGIONS = EXAMPLES / "genomic_benchmarks_regions_22-23Mb.bed"
BASES = "ACGT"
# 1,000 positions from 20 bp of the N gap before 22,000,000 into chr21 sequence
LIKELIHOOD_START, LIKELIHOOD_END = 21_999_980, 22_000_980
SNV_FLANK = 50
VARIANT_RECORDS = 80
EMBED_WINDOW = 96


@pytest.fixture(scope="module")
def model():
    return janusdna.load(janusdna.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference():
    with Reference(FASTA) as ref:
        yield ref


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plot_inputs")


def log_probs(model, sequences: list[str]) -> np.ndarray:
    """[B, L, 4] natural-log probabilities of A, C, G, T at each position given all others."""
    with torch.inference_mode():
        return model.base_log_probs(torch.stack([janusdna.encode(s) for s in sequences])).double().numpy()


@pytest.fixture(scope="module")
def likelihood_parquet(model, reference, data_dir):
    """What janus likelihood --mutagenesis writes for chr21:21,999,981-22,000,980."""
    sequence = reference.fetch("chr21", LIKELIHOOD_START, LIKELIHOOD_END)
    logp = log_probs(model, [sequence])[0]
    ref_index = np.array([BASES.find(b) for b in sequence])
    logp_ref = np.where(ref_index >= 0, logp[np.arange(len(sequence)), ref_index.clip(0)], np.nan)
    columns = {"chrom": ["chr21"] * len(sequence), "pos": np.arange(LIKELIHOOD_START, LIKELIHOOD_END), "ref": list(sequence)}
    columns |= {f"logp_{b}": logp[:, i] for i, b in enumerate(BASES)}
    columns["entropy"] = -(np.exp(logp) * logp).sum(axis=1)
    llr = {f"llr_{b}": pa.array(logp[:, i] - logp_ref, pa.float32(), from_pandas=True) for i, b in enumerate(BASES)}
    columns |= llr | {"name": ["chr21_22Mb"] * len(sequence), "skip_reason": pa.nulls(len(sequence), pa.string())}
    schema = pa.schema([("chrom", pa.string()), ("pos", pa.int64()), ("ref", pa.string()),
                        *((f"logp_{b}", pa.float32()) for b in BASES), ("entropy", pa.float32()),
                        *((f"llr_{b}", pa.float32()) for b in BASES), ("name", pa.string()), ("skip_reason", pa.string())])
    path = data_dir / "likelihood.parquet"
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


@pytest.fixture(scope="module")
def scores_parquet(model, reference, data_dir):
    """What janus score-variants writes with only the llr score for the first NA12878 records of the
    region (SNVs scored from a 101 bp window, other alleles skipped)."""
    rows = []
    with pysam.VariantFile(str(VCF)) as vcf:
        for record in list(vcf.fetch("chr21", 22_000_000, 23_000_000))[:VARIANT_RECORDS]:
            for alt_index, alt in enumerate(record.alts, 1):
                is_snv = len(record.ref) == len(alt) == 1 and alt in BASES
                rows.append({"chrom": record.chrom, "pos": record.pos, "id": record.id, "ref": record.ref, "alt": alt,
                             "alt_index": alt_index, "skip_reason": None if is_snv else "not_snv"})
    variants = pd.DataFrame(rows)
    snvs = variants[variants["skip_reason"].isna()]
    windows_ = [reference.fetch("chr21", p - 1 - SNV_FLANK, p + SNV_FLANK) for p in snvs["pos"]]
    centre = log_probs(model, windows_)[:, SNV_FLANK]
    ref_logp = centre[np.arange(len(snvs)), [BASES.index(b) for b in snvs["ref"]]]
    alt_logp = centre[np.arange(len(snvs)), [BASES.index(b) for b in snvs["alt"]]]
    variants["ref_logp"] = pd.Series(ref_logp, index=snvs.index)
    variants["alt_logp"] = pd.Series(alt_logp, index=snvs.index)
    variants["llr"] = variants["alt_logp"] - variants["ref_logp"]
    schema = pa.schema([("chrom", pa.string()), ("pos", pa.int64()), ("id", pa.string()), ("ref", pa.string()),
                        ("alt", pa.string()), ("alt_index", pa.int64()), ("llr", pa.float32()),
                        ("ref_logp", pa.float32()), ("alt_logp", pa.float32()), ("skip_reason", pa.string())])
    path = data_dir / "scores.parquet"
    pq.write_table(pa.Table.from_pandas(variants[schema.names], schema=schema, preserve_index=False), path)
    return path


@pytest.fixture(scope="module")
def embeddings_parquet(model, reference, data_dir):
    """What janus embed --window 96 --rc none writes (mean pooling) for the Genomic Benchmarks
    regions, plus one record on a contig missing from the reference."""
    regions = read_bed(BENCHMARK_REGIONS)
    centres = (regions["start"] + regions["end"]) // 2
    sequences = [reference.fetch(chrom, c - EMBED_WINDOW // 2, c + EMBED_WINDOW // 2) for chrom, c in zip(regions["chrom"], centres)]
    with torch.inference_mode():
        vectors = model.hidden_states(torch.stack([janusdna.encode(s) for s in sequences])).mean(dim=1).tolist()
    missing = {"chrom": "chrUn_KI270302v1", "start": 0, "end": 100, "name": "human_ocr_ensembl:test:positive:1",
               "strand": "+"}
    d_model = model.config.d_model
    schema = pa.schema([("chrom", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("name", pa.string()),
                        ("strand", pa.string()), ("embedding", pa.list_(pa.float32(), d_model)), ("skip_reason", pa.string())])
    table = pa.table({
        "chrom": [*regions["chrom"], missing["chrom"]], "start": [*regions["start"], missing["start"]],
        "end": [*regions["end"], missing["end"]], "name": [*regions["name"], missing["name"]],
        "strand": [*regions["strand"], missing["strand"]], "embedding": [*vectors, None],
        "skip_reason": [None] * len(regions) + [windows.SKIP_CHROM_MISSING],
    }, schema=schema)
    path = data_dir / "embeddings.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def run_dir(data_dir):
    """A real janus pretrain run of a tiny model on the chr21 sequence, validated every 4 steps."""
    config = data_dir / "tiny.json"
    config.write_text('{"d_model": 8, "n_layers": 2, "fusion_attn_dim": 16, "n_experts": 2, "max_seq_len": 32, "name": "tiny"}')
    opts = pt.PretrainOptions(fasta=FASTA, run_dir=data_dir / "run", config=config, val_regions=["chr21:22,990,001-23,000,000"],
                              batch_size=2, steps=8, save_every=8, eval_every=4, log_every=1, val_windows=2, quiet=True)
    pt.pretrain(opts)
    return opts.run_dir


def plot(*args):
    return CliRunner().invoke(plot_app, [str(a) for a in args])


def assert_png(path: Path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, channels = matplotlib.image.imread(path).shape
    assert height > 200 and width > 200 and channels in (3, 4)


def test_information_content_is_two_bits_minus_entropy():
    probs = np.array([[1, 0, 0, 0], [0.25] * 4, [0.5, 0.5, 0, 0]])
    assert information_content(probs) == pytest.approx([2, 0, 1])


@pytest.mark.parametrize("ref, alt, expected", [
    ("A", "G", "SNV transition"), ("C", "T", "SNV transition"), ("A", "C", "SNV transversion"),
    ("A", "AGT", "insertion"), ("ATG", "A", "deletion"), ("AC", "GT", "other/MNV"), ("A", "<DEL>", "other/MNV"),
])
def test_variant_class(ref, alt, expected):
    assert variant_class(ref, alt) == expected


def test_track_logo_png(likelihood_parquet, tmp_path):
    out = tmp_path / "track.png"
    result = plot("track", likelihood_parquet, "-r", "chr21:22,000,001-22,000,200", "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)
    assert not list(tmp_path.glob(".*.tmp"))


def test_track_logp_svg_of_the_whole_file(likelihood_parquet, tmp_path):
    out = tmp_path / "logp.svg"
    result = plot("track", likelihood_parquet, "--kind", "logp", "-o", out)
    assert result.exit_code == 0, result.output
    assert ET.parse(out).getroot().tag.endswith("svg")


def test_track_refuses_a_region_over_1000_bp(likelihood_parquet, tmp_path):
    result = plot("track", likelihood_parquet, "-r", "chr21:22,000,001-22,001,001", "-o", tmp_path / "t.png")
    assert result.exit_code == 2
    assert "narrow -r" in result.output
    assert not (tmp_path / "t.png").exists()


def test_track_region_without_rows(likelihood_parquet, tmp_path):
    result = plot("track", likelihood_parquet, "-r", "chr21:22,500,001-22,500,100", "-o", tmp_path / "t.png")
    assert result.exit_code == 1
    assert str(likelihood_parquet) in result.output and "chr21:22,500,001-22,500,100" in result.output


def test_bad_suffix_is_a_usage_error(likelihood_parquet, tmp_path):
    result = plot("track", likelihood_parquet, "-o", tmp_path / "track.jpg")
    assert result.exit_code == 2
    assert ".jpg" in result.output


def test_mutagenesis_png_and_pdf(likelihood_parquet, tmp_path):
    for out in (tmp_path / "ism.png", tmp_path / "ism.pdf"):
        result = plot("mutagenesis", likelihood_parquet, "-r", "chr21:21,999,991-22,000,090", "-o", out)
        assert result.exit_code == 0, result.output
    assert_png(tmp_path / "ism.png")
    assert (tmp_path / "ism.pdf").read_bytes()[:5] == b"%PDF-"


def test_mutagenesis_needs_llr_columns(likelihood_parquet, tmp_path):
    without_llr = tmp_path / "ll.parquet"
    table = pq.read_table(likelihood_parquet)
    pq.write_table(table.drop([f"llr_{b}" for b in BASES]), without_llr)
    result = plot("mutagenesis", without_llr, "-r", "chr21:22,000,001-22,000,100", "-o", tmp_path / "ism.png")
    assert result.exit_code == 1
    assert str(without_llr) in result.output and "llr_A" in result.output and "--mutagenesis" in result.output


def test_missing_column_names_file_and_column(likelihood_parquet, tmp_path):
    without_ref = tmp_path / "ll.parquet"
    pq.write_table(pq.read_table(likelihood_parquet).drop(["ref"]), without_ref)
    result = plot("track", without_ref, "-o", tmp_path / "t.png")
    assert result.exit_code == 1
    assert str(without_ref) in result.output and "ref" in result.output


def test_variants_png(scores_parquet, tmp_path):
    out = tmp_path / "variants.png"
    result = plot("variants", scores_parquet, "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)


def test_variants_all_null_score_is_drawn_not_failed(scores_parquet, tmp_path):
    indels = tmp_path / "indels.parquet"
    table = pq.read_table(scores_parquet)
    pq.write_table(table.filter(pa.compute.is_null(table["llr"])), indels)
    out = tmp_path / "indels.png"
    result = plot("variants", indels, "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)


def test_variants_unknown_score_lists_the_score_columns(scores_parquet, tmp_path):
    result = plot("variants", scores_parquet, "--score", "delta_pll", "-o", tmp_path / "v.png")
    assert result.exit_code == 1
    assert "delta_pll" in result.output and "llr" in result.output


def test_training_curves(run_dir, tmp_path):
    out = tmp_path / "curves.png"
    result = plot("training", run_dir, "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)


def test_embeddings_by_name_field(embeddings_parquet, tmp_path):
    out = tmp_path / "pca.png"
    result = plot("embeddings", embeddings_parquet, "--color-by", "name", "--name-field", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)


def test_embeddings_by_a_column_of_many_values_svg(embeddings_parquet, tmp_path):
    out = tmp_path / "pca.svg"
    result = plot("embeddings", embeddings_parquet, "--color-by", "start", "-o", out)
    assert result.exit_code == 0, result.output
    assert ET.parse(out).getroot().tag.endswith("svg")


def test_embeddings_name_field_beyond_the_name(embeddings_parquet, tmp_path):
    result = plot("embeddings", embeddings_parquet, "--name-field", "5", "-o", tmp_path / "pca.png")
    assert result.exit_code == 1
    assert "field 5" in result.output


def test_generated_png_and_a_missing_score_column(tmp_path):
    scored = tmp_path / "scored.parquet"
    rng = np.random.default_rng(0)
    pd.DataFrame({"source": ["generated, beam"] * 20 + ["real (held-out)"] * 20,
                  "label": ["0", "1"] * 20, "oracle_prob": rng.random(40)}).to_parquet(scored)
    out = tmp_path / "generated.png"
    result = plot("generated", scored, "-o", out)
    assert result.exit_code == 0, result.output
    assert_png(out)
    result = plot("generated", scored, "--score", "prob_1", "-o", tmp_path / "other.png")
    assert result.exit_code == 1 and "no column prob_1" in result.stderr and str(scored) in result.stderr
