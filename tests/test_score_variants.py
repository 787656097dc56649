"""janus score-variants: scores checked against windows built by hand and the model run directly,
on the real Platinum Genomes, GIAB and 1000 Genomes VCFs, and on bad inputs."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pysam
import pytest
import torch
from typer.testing import CliRunner

import janusdna
from dnalm.tokenizer import MASK
from conftest import DATA, EXAMPLES, HG38
from janus_cli.io.fasta import Reference
from janus_cli.main import app

PLATINUM = EXAMPLES / "platinum_NA12878_chr21_22-23Mb.vcf.gz"
GIAB = EXAMPLES / "giab_ashkenazim_trio_chr21_22-23Mb.vcf.gz"
KG = DATA / "1000G_phase3_subset_chr20.vcf.gz"
KG_FASTA = DATA / "grch37_chr20_1000G_windows.fa.gz"
WINDOW = 64


def janus(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def score(tmp_path, model_dir, vcf, *options, fasta=HG38, name="scores.parquet"):
    out = tmp_path / name
    result = janus("score-variants", vcf, "--fasta", fasta, "--model", model_dir, "--window", WINDOW,
                   "--threads", 1, "-o", out, *options)
    assert result.exit_code == 0, result.output
    return pq.read_table(out).to_pandas(), result


def vcf_lines(path):
    """Data lines of a VCF, split into fields, read as plain text (independent of pysam)."""
    with gzip.open(path, "rt") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]


def write_vcf(path, records, contig="chr21"):
    header = f"##fileformat=VCFv4.2\n##contig=<ID={contig}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    path.write_text(header + "".join("\t".join(map(str, (contig, *r, ".", ".", "."))) + "\n" for r in records))
    return path


def model_outputs(model_dir, text):
    """(hidden [L, d], base log-probs [L, 4]) of the forward strand."""
    model = janusdna.load(model_dir)
    with torch.inference_mode():
        hidden = model.hidden_states(janusdna.encode(text)[None])[0]
        return hidden, model.base_log_probs(janusdna.encode(text)[None])[0]


def fetch(chrom, start, end, fasta=HG38):
    with Reference(fasta) as reference:
        return reference.fetch(chrom, start, end)


def pll(logp, text):
    return sum(float(logp[i, "ACGT".index(b)]) for i, b in enumerate(text) if b != "N")


def first_record(kind):
    for fields in vcf_lines(PLATINUM):
        ref, alt = fields[3], fields[4]
        if "," in alt:
            continue
        if kind == "snv" and len(ref) == len(alt) == 1 or kind == "deletion" and len(ref) > len(alt) == 1:
            return fields


def test_snv_scores_are_the_models_on_hand_built_windows(tmp_path, tiny_model_dir):
    chrom, pos, vid, ref, alt = first_record("snv")[:5]
    pos0 = int(pos) - 1
    vcf = write_vcf(tmp_path / "one.vcf", [(pos, vid, ref, alt)])
    table, result = score(tmp_path, tiny_model_dir, vcf, "--rc", "none")
    row = table.iloc[0]
    ref_window = fetch(chrom, pos0 - WINDOW // 2, pos0 + WINDOW // 2)
    assert ref_window[WINDOW // 2] == ref
    alt_window = ref_window[:WINDOW // 2] + alt + ref_window[WINDOW // 2 + 1:]
    ref_hidden, ref_logp = model_outputs(tiny_model_dir, ref_window)
    alt_hidden, alt_logp = model_outputs(tiny_model_dir, alt_window)
    # llr and its terms come from the fixed reference tile where the base is most central: tiles of
    # 64 bp every 48 bp (a quarter overlap), tile k starting at 48k - 8 and providing [48k, 48k + 48)
    tile_start = pos0 // 48 * 48 - 8
    assert tile_start + 8 <= pos0 < tile_start + 56
    _, tile_logp = model_outputs(tiny_model_dir, fetch(chrom, tile_start, tile_start + WINDOW))
    at = pos0 - tile_start
    assert row["ref_logp"] == pytest.approx(float(tile_logp[at, "ACGT".index(ref)]), abs=1e-5)
    assert row["alt_logp"] == pytest.approx(float(tile_logp[at, "ACGT".index(alt)]), abs=1e-5)
    assert row["llr"] == pytest.approx(row["alt_logp"] - row["ref_logp"], abs=1e-5)
    assert b"shared reference tiles" in pq.read_schema(tmp_path / "scores.parquet").metadata[b"score_windows"]
    assert row["delta_pll"] == pytest.approx(pll(alt_logp, alt_window) - pll(ref_logp, ref_window), abs=1e-3)
    ref_mean, alt_mean = ref_hidden.mean(0), alt_hidden.mean(0)
    assert row["emb_l2"] == pytest.approx(float((ref_mean - alt_mean).norm()), rel=1e-4)
    assert row["emb_cosine"] == pytest.approx(float(torch.cosine_similarity(ref_mean, alt_mean, dim=0)), abs=1e-5)
    assert (row["chrom"], row["pos"], row["id"], row["ref"], row["alt"], row["alt_index"]) == \
        (chrom, int(pos), vid, ref, alt, 1)
    assert table["skip_reason"].isna().all() and "1 alleles, 1 scored" in result.stderr


@pytest.mark.parametrize("kind", ["snv", "deletion"])
def test_a_causal_models_llr_is_the_full_window_log_likelihood_ratio(tmp_path, tiny_hybridna_dir, kind):
    """HybriDNA: llr = log p(ALT window) - log p(REF window) for SNVs and indels alike (= delta_pll),
    ref_logp and alt_logp the two windows' log-likelihoods; embedding shifts use echo pooling."""
    chrom, pos, vid, ref, alt = first_record(kind)[:5]
    pos0 = int(pos) - 1
    vcf = write_vcf(tmp_path / "one.vcf", [(pos, vid, ref, alt)])
    table, result = score(tmp_path, tiny_hybridna_dir, vcf, "--rc", "none")
    row = table.iloc[0]
    flank = fetch(chrom, pos0 - WINDOW // 2, pos0)
    ref_window = (flank + fetch(chrom, pos0, pos0 + WINDOW))[:WINDOW]
    alt_window = (flank + alt + fetch(chrom, pos0 + len(ref), pos0 + len(ref) + WINDOW))[:WINDOW]
    ref_ll, alt_ll = (pll(model_outputs(tiny_hybridna_dir, window)[1], window) for window in (ref_window, alt_window))
    assert row["ref_logp"] == pytest.approx(ref_ll, abs=1e-3) and row["alt_logp"] == pytest.approx(alt_ll, abs=1e-3)
    assert row["llr"] == pytest.approx(alt_ll - ref_ll, abs=1e-3) and row["llr"] == pytest.approx(row["delta_pll"], abs=1e-6)
    model = janusdna.load(tiny_hybridna_dir)
    with torch.inference_mode():
        echo = [model.sequence_embedding(janusdna.encode(w)[None], "echo")[0] for w in (ref_window, alt_window)]
    assert row["emb_l2"] == pytest.approx(float((echo[0] - echo[1]).norm()), rel=1e-4)
    assert pq.read_schema(tmp_path / "scores.parquet").metadata[b"embedding_pooling"] == b"echo"


@pytest.mark.parametrize("kind", ["snv", "deletion"])
def test_a_masked_models_scores_mask_the_alleles_bases(tmp_path, tiny_mergedna_dir, kind):
    """MergeDNA: llr from one pass over the REF window with REF's bases masked (an SNV's masked REF
    and ALT windows are the same, so delta_pll = llr); delta_pll the masked span's pseudo-likelihood
    of each allele; embedding shifts from the unmasked windows."""
    chrom, pos, vid, ref, alt = first_record(kind)[:5]
    pos0 = int(pos) - 1
    vcf = write_vcf(tmp_path / "one.vcf", [(pos, vid, ref, alt)])
    table, result = score(tmp_path, tiny_mergedna_dir, vcf, "--rc", "none")
    assert result.exit_code == 0, result.output
    row = table.iloc[0]
    flank = fetch(chrom, pos0 - WINDOW // 2, pos0)
    ref_window = (flank + fetch(chrom, pos0, pos0 + WINDOW))[:WINDOW]
    alt_window = (flank + alt + fetch(chrom, pos0 + len(ref), pos0 + len(ref) + WINDOW))[:WINDOW]
    model = janusdna.load(tiny_mergedna_dir).batch_invariant()

    def masked_logp(window, allele):
        ids = janusdna.encode(window)[None].clone()
        ids[0, len(flank):len(flank) + len(allele)] = MASK
        with torch.inference_mode():
            logp = model.masked_base_log_probs(ids)[0]
        return sum(float(logp[len(flank) + k, "ACGT".index(base)]) for k, base in enumerate(allele))

    ref_span, alt_span = masked_logp(ref_window, ref), masked_logp(alt_window, alt)
    assert row["delta_pll"] == pytest.approx(alt_span - ref_span, abs=1e-4)
    if kind == "snv":
        ids = janusdna.encode(ref_window)[None].clone()
        ids[0, len(flank)] = MASK
        with torch.inference_mode():
            logp = model.masked_base_log_probs(ids)[0, len(flank)]
        assert row["ref_logp"] == pytest.approx(float(logp["ACGT".index(ref)]), abs=1e-4)
        assert row["alt_logp"] == pytest.approx(float(logp["ACGT".index(alt)]), abs=1e-4)
        assert row["llr"] == pytest.approx(row["delta_pll"], abs=1e-5)
    else:
        assert np.isnan(row["llr"])
    with torch.inference_mode():
        pooled = [model.sequence_embedding(janusdna.encode(w)[None])[0] for w in (ref_window, alt_window)]
    assert row["emb_l2"] == pytest.approx(float((pooled[0] - pooled[1]).norm()), rel=1e-4)
    assert b"[MASK]" in pq.read_schema(tmp_path / "scores.parquet").metadata[b"llr"]


def test_deletion_windows_are_anchored_and_of_equal_length(tmp_path, tiny_model_dir):
    chrom, pos, vid, ref, alt = first_record("deletion")[:5]
    pos0 = int(pos) - 1
    vcf = write_vcf(tmp_path / "del.vcf", [(pos, vid, ref, alt)])
    table, _ = score(tmp_path, tiny_model_dir, vcf, "--rc", "none")
    flank = fetch(chrom, pos0 - WINDOW // 2, pos0)
    ref_window = flank + fetch(chrom, pos0, pos0 + WINDOW // 2)
    after = pos0 + len(ref)
    alt_window = (flank + alt + fetch(chrom, after, after + WINDOW))[:WINDOW]
    _, ref_logp = model_outputs(tiny_model_dir, ref_window)
    _, alt_logp = model_outputs(tiny_model_dir, alt_window)
    row = table.iloc[0]
    assert row["delta_pll"] == pytest.approx(pll(alt_logp, alt_window) - pll(ref_logp, ref_window), abs=1e-3)
    assert np.isnan(row["llr"]) and np.isnan(row["ref_logp"])  # substitutions only


def test_rc_avg_combines_the_strands_and_both_writes_them(tmp_path, tiny_model_dir):
    _, pos, vid, ref, alt = first_record("snv")[:5]
    vcf = write_vcf(tmp_path / "one.vcf", [(pos, vid, ref, alt)])
    both, _ = score(tmp_path, tiny_model_dir, vcf, "--rc", "both", "--scores", "ref_logp,alt_logp")
    row = both.iloc[0]
    for name in ("ref_logp", "alt_logp"):
        combined = np.log((np.exp(row[f"{name}_fwd"]) + np.exp(row[f"{name}_rev"])) / 2)
        assert row[name] == pytest.approx(combined, abs=1e-5)
    assert list(both.columns) == ["chrom", "pos", "id", "ref", "alt", "alt_index", "ref_logp", "alt_logp",
                                  "ref_logp_fwd", "alt_logp_fwd", "ref_logp_rev", "alt_logp_rev", "skip_reason"]


def test_platinum_vcf_every_alt_gets_a_row_in_order(tmp_path, tiny_model_dir):
    table, result = score(tmp_path, tiny_model_dir, PLATINUM, "--scores", "llr", "--window", 16)
    expected = [(int(f[1]), f[3], alt, i) for f in vcf_lines(PLATINUM) for i, alt in enumerate(f[4].split(","), 1)]
    assert list(zip(table["pos"], table["ref"], table["alt"], table["alt_index"])) == expected
    assert (table["alt_index"] == 2).sum() == 22  # the multi-allelic records
    assert table["skip_reason"].isna().all()  # every REF matches the FASTA
    snv = (table["ref"].str.len() == 1) & (table["alt"].str.len() == 1)
    assert table.loc[snv, "llr"].notna().all() and table.loc[~snv, "llr"].isna().all()
    assert f"{len(expected)} alleles, {len(expected)} scored" in result.stderr


def test_giab_star_alleles_are_skipped_with_a_reason(tmp_path, tiny_model_dir):
    lines = vcf_lines(GIAB)
    subset = [f for f in lines if f[4] == "*" or "," in f[4]][:5] + lines[:20]
    vcf = tmp_path / "giab.vcf"
    with gzip.open(GIAB, "rt") as handle:
        header = "".join(line for line in handle if line.startswith("#"))
    vcf.write_text(header + "".join("\t".join(f) + "\n" for f in sorted(subset, key=lambda f: int(f[1]))))
    table, result = score(tmp_path, tiny_model_dir, vcf, "--scores", "llr", "--window", 16)
    stars = table["alt"] == "*"
    assert stars.any() and (table.loc[stars, "skip_reason"] == "star_allele").all()
    assert table.loc[~stars, "skip_reason"].isna().all()
    assert f"star_allele {int(stars.sum())}" in result.stderr


def test_1000_genomes_vcf_against_the_number_named_grch37(tmp_path, tiny_model_dir):
    table, _ = score(tmp_path, tiny_model_dir, KG, "--scores", "llr", "--window", 16, fasta=KG_FASTA)
    n_alts = sum(len(f[4].split(",")) for f in vcf_lines(KG))
    assert len(table) == n_alts and (table["chrom"] == "20").all()
    assert table["skip_reason"].isna().sum() == n_alts - table["skip_reason"].notna().sum()
    assert set(table["skip_reason"].dropna()) <= {"symbolic_allele"}
    assert table["llr"].notna().sum() > 0.8 * n_alts


def test_check_ref_skip_warn_error(tmp_path, tiny_model_dir):
    chrom, pos, vid, ref, alt = first_record("snv")[:5]
    wrong = next(b for b in "ACGT" if b not in (ref, alt))
    vcf = write_vcf(tmp_path / "wrong.vcf", [(pos, vid, wrong, alt)])
    skipped, _ = score(tmp_path, tiny_model_dir, vcf)
    assert skipped["skip_reason"].tolist() == ["ref_mismatch"] and np.isnan(skipped["llr"][0])
    warned, result = score(tmp_path, tiny_model_dir, vcf, "--check-ref", "warn")
    assert warned["skip_reason"].isna().all() and not np.isnan(warned["llr"][0])
    assert f"record 1 ({chrom}:{pos}): REF {wrong} but the reference has {ref}" in result.stderr
    out = tmp_path / "error.parquet"
    result = janus("score-variants", vcf, "--fasta", HG38, "--model", tiny_model_dir, "--check-ref", "error", "-o", out)
    assert result.exit_code == 1 and f"record 1 ({chrom}:{pos}): REF {wrong} does not match" in result.stderr
    assert not out.exists() and os.listdir(tmp_path).count(".error.parquet.partial") == 0


def test_finetuned_head_adds_class_probabilities(tmp_path, tiny_model_dir):
    import dnalm

    torch.manual_seed(3)
    classifier = dnalm.SequenceClassifier(janusdna.load(tiny_model_dir), 2)
    head = classifier.head
    dnalm.save_finetuned(classifier, dnalm.Task(False, labels=["neg", "pos"]), tmp_path / "ft")
    chrom, pos, vid, ref, alt = first_record("snv")[:5]
    vcf = write_vcf(tmp_path / "one.vcf", [(pos, vid, ref, alt)])
    table, _ = score(tmp_path, tmp_path / "ft", vcf, "--rc", "none", "--scores", "llr")
    pos0 = int(pos) - 1
    ref_window = fetch(chrom, pos0 - WINDOW // 2, pos0 + WINDOW // 2)
    alt_window = ref_window[:WINDOW // 2] + alt + ref_window[WINDOW // 2 + 1:]
    with torch.inference_mode():
        probs = [torch.softmax(head(model_outputs(tiny_model_dir, w)[0].mean(0)), -1) for w in (ref_window, alt_window)]
    row = table.iloc[0]
    for j, label in enumerate(["neg", "pos"]):
        assert row[f"prob_{label}_ref"] == pytest.approx(float(probs[0][j]), abs=1e-5)
        assert row[f"prob_{label}_alt"] == pytest.approx(float(probs[1][j]), abs=1e-5)
        assert row[f"prob_{label}_diff"] == pytest.approx(float(probs[1][j] - probs[0][j]), abs=1e-5)


def test_vcf_output_is_bgzipped_indexed_with_info_fields(tmp_path, tiny_model_dir):
    table, _ = score(tmp_path, tiny_model_dir, PLATINUM, "--scores", "llr,delta_pll", "--window", 16,
                     name="scores.parquet")
    out = tmp_path / "scores.vcf.gz"
    result = janus("score-variants", PLATINUM, "--fasta", HG38, "--model", tiny_model_dir, "--window", 16,
                   "--scores", "llr,delta_pll", "-o", out)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scores.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as vcf:
        assert {"JANUS_LLR", "JANUS_DELTA_PLL", "JANUS_ALT_INDEX"} <= set(vcf.header.info)
        records = list(vcf.fetch("chr21", 22_000_000, 23_000_000))
    assert len(records) == len(table)
    for record, (_, row) in zip(records[:50], table.head(50).iterrows()):
        assert (record.pos, record.ref, record.alts[0]) == (row["pos"], row["ref"], row["alt"])
        assert record.info["JANUS_DELTA_PLL"] == pytest.approx(row["delta_pll"], rel=1e-4, abs=1e-4)


def test_stdout_tsv_works_with_head(tmp_path, tiny_model_dir):
    command = (f"{sys.executable} -m janus_cli score-variants {PLATINUM} --fasta {HG38} --model {tiny_model_dir} "
               "--window 16 --scores llr | head -3; echo \"exit ${PIPESTATUS[0]}\"")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["chrom", "pos", "id", "ref", "alt", "alt_index", "llr", "skip_reason"]
    first = vcf_lines(PLATINUM)[0]
    assert lines[1].split("\t")[:5] == first[:5] and lines[-1] == "exit 0"
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr


@pytest.mark.parametrize("content, message", [
    ("chr21\t100\t.\tA\tG\t.\t.\t.\n", "not a VCF or BCF file"),
    ("", "empty file"),
])
def test_bad_vcf_exits_1_without_output(tmp_path, model_dir_of_each_arch, content, message):
    vcf = tmp_path / "bad.vcf"
    vcf.write_text(content)
    out = tmp_path / "scores.parquet"
    result = janus("score-variants", vcf, "--fasta", HG38, "--model", model_dir_of_each_arch, "-o", out)
    assert result.exit_code == 1 and message in result.stderr and str(vcf) in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.vcf"]


def test_truncated_gzip_exits_1_without_output(tmp_path, model_dir_of_each_arch):
    data = PLATINUM.read_bytes()
    vcf = tmp_path / "cut.vcf.gz"
    vcf.write_bytes(data[:len(data) // 2])
    out = tmp_path / "scores.parquet"
    result = janus("score-variants", vcf, "--fasta", HG38, "--model", model_dir_of_each_arch, "-o", out)
    assert result.exit_code == 1 and str(vcf) in result.stderr and "truncated" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["cut.vcf.gz"]


def test_fasta_missing_the_vcfs_contig_exits_1(tmp_path, tiny_model_dir):
    vcf = write_vcf(tmp_path / "chr7.vcf", [(1000, ".", "A", "G")], contig="chr7")
    out = tmp_path / "scores.parquet"
    result = janus("score-variants", vcf, "--fasta", HG38, "--model", tiny_model_dir, "-o", out)
    assert result.exit_code == 1 and "chromosome 'chr7' is not in the reference" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["chr7.vcf"]


def test_read_only_output_directory_exits_1(read_only_dir, tiny_model_dir):
    out = read_only_dir / "scores.parquet"
    result = janus("score-variants", PLATINUM, "--fasta", HG38, "--model", tiny_model_dir, "-o", out)
    assert result.exit_code == 1 and str(out) in result.stderr and "Permission denied" in result.stderr
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize("shipped", ["janusdna-d48-chr20", "hybridna-d64-chr20"])
def test_a_variant_scores_the_same_alone_and_inside_a_batch_with_the_shipped_model(tmp_path, shipped):
    records = [f for f in vcf_lines(PLATINUM) if "," not in f[4]][:24]
    batch_vcf = write_vcf(tmp_path / "batch.vcf", [f[1:5] for f in records])
    alone_vcf = write_vcf(tmp_path / "alone.vcf", [records[9][1:5]])
    common = ["--fasta", HG38, "--model", shipped, "--window", 64, "--batch-size", 16, "--threads", 1]
    for vcf, out in ((batch_vcf, tmp_path / "batch.parquet"), (alone_vcf, tmp_path / "alone.parquet")):
        result = janus("score-variants", vcf, *common, "-o", out)
        assert result.exit_code == 0, result.output
    batch = pq.read_table(tmp_path / "batch.parquet").slice(9, 1)
    alone = pq.read_table(tmp_path / "alone.parquet")
    assert alone.equals(batch)  # every bit of every score


def test_region_scores_only_the_overlapping_records_of_an_indexed_vcf(tmp_path, tiny_model_dir):
    table, _ = score(tmp_path, tiny_model_dir, PLATINUM, "-r", "chr21:22,100,001-22,300,000", "--scores", "llr")
    expected = [(int(f[1]), alt) for f in vcf_lines(PLATINUM) for alt in f[4].split(",")
                if int(f[1]) + len(f[3]) - 1 >= 22_100_001 and int(f[1]) <= 22_300_000]
    assert list(zip(table["pos"], table["alt"])) == expected and len(expected) > 50
    plain = write_vcf(tmp_path / "plain.vcf", [(22_100_100, ".", "A", "G")])
    result = janus("score-variants", plain, "-r", "chr21:1-100", "--fasta", HG38, "--model", tiny_model_dir)
    assert result.exit_code == 1 and "needs a bgzipped, indexed VCF" in result.stderr


def test_dense_snvs_share_reference_tiles_and_score_as_they_do_alone(tmp_path, tiny_model_dir, monkeypatch):
    """100 SNVs at every third base: llr, ref_logp and alt_logp come from a few shared tiles
    (64 bp every 48 bp) instead of one window per variant, each run once though the records come
    in chunks of 8 (a tile straddles chunks), and each variant's numbers are those it gets when
    scored alone."""
    from janus_cli.commands import score_variants
    from janus_cli.engine import inference

    start0 = 22_000_000 + 5_000
    text = fetch("chr21", start0, start0 + 300)
    records = [(start0 + k + 1, ".", text[k], "ACGT"[("ACGT".index(text[k]) + 1) % 4]) for k in range(0, 300, 3)]
    windows_run = []
    real_run = inference.WindowRunner.run
    monkeypatch.setattr(inference.WindowRunner, "run", lambda self, w: windows_run.append(len(w)) or real_run(self, w))
    monkeypatch.setattr(score_variants, "VARIANTS_PER_CHUNK", 8)
    dense, _ = score(tmp_path, tiny_model_dir, write_vcf(tmp_path / "dense.vcf", records), "--scores", "llr,ref_logp,alt_logp")
    assert sum(windows_run) <= 300 // 48 + 2  # tiles, not 100 windows
    monkeypatch.undo()
    for k in (0, 17, 60, 99):
        alone, _ = score(tmp_path, tiny_model_dir, write_vcf(tmp_path / "alone.vcf", [records[k]]),
                         "--scores", "llr,ref_logp,alt_logp", name="alone.parquet")
        assert alone[["llr", "ref_logp", "alt_logp"]].iloc[0].tolist() == dense[["llr", "ref_logp", "alt_logp"]].iloc[k].tolist()
