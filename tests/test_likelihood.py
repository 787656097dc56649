"""janus likelihood: per-base distributions checked against the model run directly."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import dnalm
import janusdna
from conftest import DATA, EXAMPLES, HG38
from janus_cli.io.fasta import Reference
from janus_cli.main import app

REAL_START = 21_999_999  # 0-based start of the real sequence in the example FASTA


def janus(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def run_to_table(tmp_path, model_dir, *args, name="ll.parquet"):
    out = tmp_path / name
    result = janus("likelihood", *args, "--fasta", HG38, "--model", model_dir, "--threads", 1, "-o", out)
    assert result.exit_code == 0, result.output
    return pq.read_table(out).to_pandas(), result


def model_log_probs(model_dir, text):
    model = dnalm.load(model_dir)
    ids = janusdna.encode(text)
    with torch.inference_mode():
        forward = model.base_log_probs(ids[None])[0]
        reverse = model.base_log_probs(janusdna.reverse_complement(ids)[None])[0].flip(0).flip(-1)
    return forward.numpy(), reverse.numpy()


def fetch(start, end):
    with Reference(HG38) as reference:
        return reference.fetch("chr21", start, end)


def test_per_base_log_probs_are_the_models_on_both_strands(tmp_path, model_dir_of_every_arch):
    tiny_model_dir = model_dir_of_every_arch
    start = REAL_START + 1000
    table, result = run_to_table(tmp_path, tiny_model_dir, "-r", f"chr21:{start + 1}-{start + 120}")
    text = fetch(start, start + 120)
    forward, reverse = model_log_probs(tiny_model_dir, text)
    expected = np.log((np.exp(forward) + np.exp(reverse)) / 2)
    assert table["pos"].tolist() == list(range(start, start + 120))
    assert "".join(table["ref"]) == text
    logp = table[["logp_A", "logp_C", "logp_G", "logp_T"]].to_numpy()
    np.testing.assert_allclose(logp, expected, atol=2e-5)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table["entropy"], -(np.exp(expected) * expected).sum(1), atol=2e-5)
    ref_column = ["ACGT".index(base) for base in text]
    np.testing.assert_allclose(table["logp_ref"], expected[np.arange(120), ref_column], atol=2e-5)
    assert table["skip_reason"].isna().all()
    assert "120 bases scored" in result.stderr
    context = dnalm.load(tiny_model_dir).prediction_context
    assert pq.read_schema(tmp_path / "ll.parquet").metadata[b"prediction_context"].decode().startswith(context)

    forward_only, _ = run_to_table(tmp_path, tiny_model_dir, "-r", f"chr21:{start + 1}-{start + 120}", "--rc", "none",
                                   name="fwd.parquet")
    np.testing.assert_allclose(forward_only[["logp_A", "logp_C", "logp_G", "logp_T"]].to_numpy(), forward, atol=2e-5)


def test_mutagenesis_is_the_log_ratio_against_the_reference_base(tmp_path, tiny_model_dir):
    start = REAL_START + 5000
    table, _ = run_to_table(tmp_path, tiny_model_dir, "-r", f"chr21:{start + 1}-{start + 50}", "--mutagenesis",
                            "--rc", "none")
    forward, _ = model_log_probs(tiny_model_dir, fetch(start, start + 50))
    for i, ref in enumerate(table["ref"]):
        for j, base in enumerate("ACGT"):
            expected = forward[i, j] - forward[i, "ACGT".index(ref)]
            assert table[f"llr_{base}"][i] == pytest.approx(expected, abs=2e-5)
    assert all(table.loc[i, f"llr_{ref}"] == 0 for i, ref in enumerate(table["ref"]))


def test_a_causal_models_mutagenesis_is_the_full_window_log_likelihood_ratio(tmp_path, tiny_hybridna_dir):
    """llr_X at t = sum over the window of log p(base | bases before it) with X at t, minus the same
    for the reference window: written out here one mutated window at a time."""
    start = REAL_START + 5000
    table, _ = run_to_table(tmp_path, tiny_hybridna_dir, "-r", f"chr21:{start + 1}-{start + 12}", "--mutagenesis",
                            "--rc", "none")
    text = fetch(start, start + 12)

    def window_log_likelihood(window):
        log_probs, _ = model_log_probs(tiny_hybridna_dir, window)
        return sum(log_probs[i, "ACGT".index(base)] for i, base in enumerate(window))

    reference = window_log_likelihood(text)
    for i, ref in enumerate(text):
        for base in "ACGT":
            expected = window_log_likelihood(text[:i] + base + text[i + 1:]) - reference
            assert table[f"llr_{base}"][i] == pytest.approx(expected, abs=5e-5)
    assert b"one causal pass per substitution" in pq.read_schema(tmp_path / "ll.parquet").metadata[b"mutagenesis"]


def test_long_region_takes_each_base_from_the_tile_where_it_is_central(tmp_path, model_dir_of_each_arch):
    tiny_model_dir = model_dir_of_each_arch
    start = REAL_START + 20_000
    table, _ = run_to_table(tmp_path, tiny_model_dir, "-r", f"chr21:{start + 1}-{start + 600}", "--rc", "none")
    text = fetch(start, start + 600)
    assert table["pos"].tolist() == list(range(start, start + 600))
    # tiles of 256 overlapping by 64: [0,256) [192,448) [344,600); overlaps split at 224 and 396
    for tile_start, tile_end, owned_from, owned_to in [(0, 256, 0, 224), (192, 448, 224, 396), (344, 600, 396, 600)]:
        forward, _ = model_log_probs(tiny_model_dir, text[tile_start:tile_end])
        np.testing.assert_allclose(table[["logp_A", "logp_C", "logp_G", "logp_T"]].to_numpy()[owned_from:owned_to],
                                   forward[owned_from - tile_start:owned_to - tile_start], atol=2e-5)


def test_window_padded_with_n_outputs_only_positions_inside_the_contig(tmp_path):
    fasta = tmp_path / "tiny.fa"
    fasta.write_text(">c\n" + "ACGTTGCA" * 5 + "\n")
    config = janusdna.JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, n_experts=4, max_seq_len=64)
    model_dir = janusdna.save(janusdna.JanusDNA(config), tmp_path / "m")
    out = tmp_path / "ll.parquet"
    result = janus("likelihood", "-r", "c:1-4", "--window", 20, "--max-n-frac", 1, "--fasta", fasta,
                   "--model", model_dir, "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pandas()
    assert table["pos"].tolist() == list(range(0, 12))  # window -8..12, clipped to the contig


def test_real_exons_in_n_padding_or_past_the_contig_are_all_skipped(tmp_path, tiny_model_dir):
    out = tmp_path / "ll.parquet"
    result = janus("likelihood", EXAMPLES / "refseq_exons_chr21.bed", "--fasta", HG38, "--model", tiny_model_dir,
                   "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pandas()
    starts = [int(line.split("\t")[1]) for line in open(EXAMPLES / "refseq_exons_chr21.bed") if line.strip()]
    past_end = sum(start >= 23_000_000 for start in starts)  # the example contig is 23,000,000 bp
    expected = ["edge" if start >= 23_000_000 else "n_fraction" for start in starts]
    assert table["skip_reason"].tolist() == expected and 0 < past_end < len(starts)
    assert table["pos"].tolist() == starts  # a skipped region's row sits at its start
    assert result.stderr.strip().splitlines()[-1] == (
        f"janus: likelihood: 0 bases scored, skipped records: chrom_missing 0, edge {past_end}, empty 0, "
        f"n_fraction {len(starts) - past_end}")


def test_chr_named_exons_match_a_number_named_reference(tmp_path, tiny_model_dir):
    exons = DATA / "refseq_exons_chr20_30.0-30.2Mb_local.bed"
    lines = open(exons).read().splitlines()[1:4]  # after the track line
    bed = tmp_path / "exons.bed"
    bed.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ll.parquet"
    result = janus("likelihood", bed, "--fasta", DATA / "grch37_chr20_30.0-30.2Mb.fa.gz", "--model", tiny_model_dir,
                   "-o", out)
    assert result.exit_code == 0, result.output
    assert "chromosome chr20 matched to reference contig 20" in result.stderr
    table = pq.read_table(out).to_pandas()
    expected_rows = sum(int(line.split("\t")[2]) - int(line.split("\t")[1]) for line in lines)
    assert len(table) == expected_rows and (table["chrom"] == "chr20").all()


def test_bedgraph_track_and_tsv_on_stdout(tmp_path, tiny_model_dir):
    start = REAL_START + 100
    region = f"chr21:{start + 1}-{start + 30}"
    table, _ = run_to_table(tmp_path, tiny_model_dir, "-r", region)
    bedgraph = tmp_path / "entropy.bedgraph"
    result = janus("likelihood", "-r", region, "--fasta", HG38, "--model", tiny_model_dir, "--track", "entropy",
                   "-o", bedgraph)
    assert result.exit_code == 0, result.output
    header, *lines = bedgraph.read_text().splitlines()
    assert header.startswith("track type=bedGraph")
    fields = [line.split("\t") for line in lines]
    assert [(f[0], int(f[1]), int(f[2])) for f in fields] == [("chr21", p, p + 1) for p in table["pos"]]
    np.testing.assert_allclose([float(f[3]) for f in fields], table["entropy"], rtol=1e-5)

    stdout = janus("likelihood", "-r", region, "--fasta", HG38, "--model", tiny_model_dir)
    assert stdout.exit_code == 0
    tsv_header, first, *_ = stdout.stdout.splitlines()
    assert tsv_header.split("\t") == list(table.columns)
    assert float(first.split("\t")[3]) == pytest.approx(table["logp_A"][0], rel=1e-6)

    bad_track = janus("likelihood", "-r", region, "--fasta", HG38, "--model", tiny_model_dir, "--track", "llr_A",
                      "-o", tmp_path / "x.bedgraph")
    assert bad_track.exit_code == 2 and "--track 'llr_A'" in bad_track.stderr


def test_fetch_padded_fills_n_outside_the_contig():
    with Reference(DATA / "grch37_chr20_30.0-30.2Mb.fa.gz") as reference:
        length = reference.lengths["20"]
        whole = reference.fetch("20", 0, length)
        for start, end in [(-5, 3), (-5, -1), (length - 3, length + 4), (length + 2, length + 5), (10, 20),
                           (-2, length + 2)]:
            expected = "".join(whole[i] if 0 <= i < length else "N" for i in range(start, end))
            assert reference.fetch_padded("20", start, end) == expected
