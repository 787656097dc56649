"""janus tokenize and janus plot tokens: a tiny random MergeDNA's learned tokens of real GRCh37
chr20 sequence, checked against the model run directly (token_spans), across strands, batches,
chunks, tiles and output formats."""

import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import dnalm
from conftest import DATA
from janus_cli.commands import tokenize as tokenize_module
from janus_cli.errors import UsageError
from janus_cli.io.fasta import Reference
from janus_cli.main import app

FASTA = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"  # contig "20", local coordinates 0..200,000
CONTIG_LENGTH = 200_000
# (chrom, start, end, name, strand): promoter/enhancer-like names, both strands, one region longer
# than the model (1,024 bases: 3 tiles), one on a contig the reference lacks
RECORDS = [
    ("20", 1000, 1100, "promoter:a", "+"),
    ("20", 1000, 1100, "promoter:b", "-"),
    ("chr20", 5003, 7503, "enhancer:long", "+"),
    ("20", 90_017, 90_230, "enhancer:c", "-"),
    ("20", 120_000, 120_061, "splice:d", "."),
    ("chr7", 100, 200, "splice:missing", "+"),
]
KEPT = [r for r in RECORDS if r[0] != "chr7"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return dnalm.save(dnalm.from_preset("mergedna-tiny", seed=0), tmp_path_factory.mktemp("mergedna") / "tiny")


@pytest.fixture(scope="module")
def model(model_dir):
    return dnalm.load(model_dir)


@pytest.fixture(scope="module")
def reference_text():
    with Reference(FASTA) as reference:
        return reference.fetch("20", 0, CONTIG_LENGTH)


def janus(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_bed(path, records):
    path.write_text("".join(f"{c}\t{s}\t{e}\t{n}\t0\t{st}\n" for c, s, e, n, st in records))
    return path


def tokenize_to(tmp_path, model_dir, out_name, *options, records=RECORDS):
    bed = write_bed(tmp_path / "regions.bed", records)
    out = tmp_path / out_name
    result = janus("tokenize", bed, "--fasta", FASTA, "--model", model_dir, "--threads", 1, "-o", out, *options)
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def tokens(tmp_path_factory, model_dir):
    out, result = tokenize_to(tmp_path_factory.mktemp("tokens"), model_dir, "tokens.parquet", "--class-field", "1")
    return pq.read_table(out).to_pandas(), result


def direct_tokens(model, text: str, strand: str):
    """(starts, sizes) of the model's tokens of text read on strand, run directly."""
    ids = dnalm.encode(text)
    if strand == "-":
        ids = dnalm.reverse_complement(ids)
    with torch.inference_mode():
        starts, sizes = model.token_spans(ids[None])[0]
    return starts.numpy(), sizes.numpy()


def reverse_complement(text: str) -> str:
    return text[::-1].translate(str.maketrans("ACGTN", "TGCAN"))


# --- the tokens -------------------------------------------------------------------------------------

def test_tokens_are_contiguous_ordered_and_cover_every_base_of_each_record(tokens, reference_text):
    rows, _ = tokens
    assert list(rows.columns) == ["chrom", "start", "end", "name", "strand", "class", "token", "length",
                                  "sequence", "skip_reason"]
    assert rows["name"].unique().tolist() == [r[3] for r in RECORDS]  # records in input order
    for chrom, start, end, name, strand in KEPT:
        record = rows[rows["name"] == name]
        assert record["skip_reason"].isna().all() and (record["chrom"] == chrom).all()
        assert record["token"].tolist() == list(range(len(record)))
        assert (record["length"] == record["end"] - record["start"]).all() and (record["length"] >= 1).all()
        assert record["length"].max() <= 16  # MergeDNA's merge window
        # in read order: 5' to 3' on the record's strand
        starts, ends = record["start"].to_numpy(), record["end"].to_numpy()
        if strand == "-":
            assert ends[0] == end and starts[-1] == start and (ends[1:] == starts[:-1]).all()
        else:
            assert starts[0] == start and ends[-1] == end and (starts[1:] == ends[:-1]).all()
        assert record["length"].sum() == end - start
        # the sequence column is the token's bases as read on the record's strand
        for s, e, text in zip(starts, ends, record["sequence"]):
            assert text == (reverse_complement(reference_text[s:e]) if strand == "-" else reference_text[s:e])
        # the tiny model keeps round(0.5 x length) tokens per tile
        if end - start <= 1024:
            assert len(record) == int(np.floor((end - start) * 0.5 + 0.5))


def test_tokens_equal_the_model_run_directly_on_both_strands(tokens, model, reference_text):
    rows, _ = tokens
    for chrom, start, end, name, strand in KEPT:
        if end - start > 1024:
            continue
        record = rows[rows["name"] == name]
        offsets, sizes = direct_tokens(model, reference_text[start:end], strand)
        if strand == "-":  # offset o of the reverse complement is genome end - o - size
            expected_start = end - offsets - sizes
        else:
            expected_start = start + offsets
        assert record["start"].tolist() == expected_start.tolist()
        assert record["length"].tolist() == sizes.tolist()
    # and the two strands of one region are tokenized differently (the check above can tell them apart)
    plus, minus = rows[rows["name"] == "promoter:a"], rows[rows["name"] == "promoter:b"]
    assert sorted(plus["start"]) != sorted(minus["start"])


def test_a_skipped_record_is_one_row_with_its_reason(tokens):
    rows, _ = tokens
    missing = rows[rows["name"] == "splice:missing"]
    assert len(missing) == 1 and missing["skip_reason"].iloc[0] == "chrom_missing"
    assert missing[["start", "end"]].iloc[0].tolist() == [100, 200] and missing["token"].isna().all()


def test_a_region_gets_the_same_tokens_alone_in_a_batch_and_in_other_chunks(tmp_path, model_dir, tokens, monkeypatch):
    rows, _ = tokens
    columns = ["start", "end", "token", "length", "sequence"]
    expected = rows[rows["name"] == "enhancer:c"][columns].reset_index(drop=True)
    # alone, as -r (strand '.', so compare with the forward strand of the same bases)
    result = janus("tokenize", "-r", "20:90,018-90,230", "--fasta", FASTA, "--model", model_dir, "--threads", 1,
                   "-o", tmp_path / "alone.parquet")
    assert result.exit_code == 0, result.output
    alone = pq.read_table(tmp_path / "alone.parquet").to_pandas()
    same_bases = [r for r in KEPT if r[3] != "enhancer:c"] + [("20", 90_017, 90_230, "enhancer:c", "+")]
    out, _ = tokenize_to(tmp_path, model_dir, "batch.parquet", "--batch-size", 1, records=same_bases)
    forward = pq.read_table(out).to_pandas()
    forward = forward[forward["name"] == "enhancer:c"][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone[columns], forward)
    # in a batch of 16 (default) and of 1, in chunks of 256 records and of 1 record
    for batch_size, chunk in ((1, 256), (16, 1), (3, 2)):
        monkeypatch.setattr(tokenize_module, "RECORDS_PER_CHUNK", chunk)
        out = tmp_path / f"b{batch_size}c{chunk}.parquet"
        tokenize_module.tokenize(tokenize_module.TokenizeOptions(
            inputs=write_bed(tmp_path / "r.bed", RECORDS), fasta=FASTA, model=str(model_dir), out=str(out),
            batch_size=batch_size, class_field="1", threads=1, quiet=True), ["janus"])
        again = pq.read_table(out).to_pandas()
        if chunk == 1:
            assert len(pq.read_metadata(out).metadata[b"janus_chunks"].decode().split("],")) == len(RECORDS)
        pd.testing.assert_frame_equal(again[again["name"] == "enhancer:c"][columns].reset_index(drop=True), expected)
        pd.testing.assert_frame_equal(again, rows)


# --- long regions: tiles --------------------------------------------------------------------------

def test_a_region_longer_than_the_model_is_joined_from_whole_tile_tokens(tokens, model, reference_text):
    rows, _ = tokens
    start, end = 5003, 7503
    record = rows[rows["name"] == "enhancer:long"]
    spans = tokenize_module.grid_tiles(end - start, 1024, 256)
    assert spans == [(0, 1024), (768, 1792), (1536, 2500)]
    tile_tokens = set()
    for a, b in spans:
        offsets, sizes = direct_tokens(model, reference_text[start + a:start + b], "+")
        tile_tokens |= {(start + a + int(o), int(g)) for o, g in zip(offsets, sizes)}
    assert all((s, g) in tile_tokens for s, g in zip(record["start"], record["length"]))
    # the first tile's tokens up to its join, and no token of the first tile's right edge
    first = direct_tokens(model, reference_text[start:start + 1024], "+")
    head = record[record["end"] <= start + 768]
    assert head["start"].tolist() == (start + first[0][: len(head)]).tolist()


def test_tiles_without_a_common_boundary_join_at_the_middle_of_their_overlap():
    spans = [(0, 10), (6, 16)]
    left = (np.array([0, 3, 7]), np.array([3, 4, 3]))  # boundaries 0 3 7 10
    right = (np.array([0, 3, 5]), np.array([3, 2, 5]))  # boundaries 6 9 11 16: none common in 6..10
    starts, sizes = tokenize_module.join_tiles(spans, [left, right])
    # joined at 8, the middle: [7, 10) of the left tile and [6, 9) of the right one are cut there
    assert starts.tolist() == [0, 3, 7, 8, 9, 11] and sizes.tolist() == [3, 4, 1, 1, 2, 5]
    right_common = (np.array([0, 1, 4]), np.array([1, 3, 6]))  # boundaries 6 7 10 16: 7 and 10 common
    starts, sizes = tokenize_module.join_tiles(spans, [left, right_common])
    assert starts.tolist() == [0, 3, 7, 10] and sizes.tolist() == [3, 4, 3, 6]


# --- output formats ---------------------------------------------------------------------------------

def test_bed_output_parses_and_matches_the_parquet(tmp_path, model_dir, tokens):
    rows, _ = tokens
    out, _ = tokenize_to(tmp_path, model_dir, "tokens.bed")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("track ")
    bed = pd.DataFrame([line.split("\t") for line in lines[1:]])
    assert bed.shape[1] == 9
    kept = rows[rows["skip_reason"].isna()]
    assert bed[0].tolist() == kept["chrom"].tolist()
    assert bed[1].astype(int).tolist() == kept["start"].tolist() and bed[2].astype(int).tolist() == kept["end"].tolist()
    assert bed[3].tolist() == [f"{n}:{t}" for n, t in zip(kept["name"], kept["token"].astype(int))]
    assert bed[5].tolist() == kept["strand"].tolist()
    assert bed[8].iloc[0] != bed[8].iloc[1]  # neighbouring tokens in different colours


def test_bed_output_clips_tokens_of_the_n_padding_to_the_contig(tmp_path, model_dir):
    # a 64-bp window centred on 20:1-10 starts 27 bases before the contig: N padding
    out, _ = tokenize_to(tmp_path, model_dir, "edge.parquet", "--window", 64, "--max-n-frac", 0.5,
                         records=[("20", 0, 10, "start", "+")])
    rows = pq.read_table(out).to_pandas()
    assert rows["start"].iloc[0] == -27 and rows["end"].iloc[-1] == 37
    assert rows["sequence"].iloc[0].startswith("N")
    out, _ = tokenize_to(tmp_path, model_dir, "edge.bed", "--window", 64, "--max-n-frac", 0.5,
                         records=[("20", 0, 10, "start", "+")])
    bed = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert int(bed[0][1]) == 0 and all(int(f[1]) >= 0 and int(f[2]) > int(f[1]) for f in bed)
    assert int(bed[-1][2]) == 37


def test_tsv_output_equals_the_parquet(tmp_path, model_dir, tokens):
    rows, _ = tokens
    out, _ = tokenize_to(tmp_path, model_dir, "tokens.tsv", "--class-field", "1")
    tsv = pd.read_csv(out, sep="\t", keep_default_na=False, dtype=str)
    assert list(tsv.columns) == list(rows.columns)
    kept = rows[rows["skip_reason"].isna()]
    assert tsv.loc[tsv["skip_reason"] == ".", "start"].astype(int).tolist() == kept["start"].tolist()
    assert tsv.loc[tsv["skip_reason"] == ".", "sequence"].tolist() == kept["sequence"].tolist()


def test_sequences_need_no_reference(tmp_path, model_dir, model, reference_text, monkeypatch):
    monkeypatch.delenv("JANUS_FASTA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/janus/config.toml either
    texts = {"seq1": reference_text[1000:1100], "seq2": reference_text[90_017:90_230]}
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">{name} description\n{text}\n" for name, text in texts.items()))
    result = janus("tokenize", fasta, "--model", model_dir, "--threads", 1, "-o", tmp_path / "seqs.parquet")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "seqs.parquet").to_pandas()
    assert list(rows.columns) == ["start", "end", "name", "class", "token", "length", "sequence", "skip_reason"]
    for name, text in texts.items():
        record = rows[rows["name"] == name]
        offsets, sizes = direct_tokens(model, text, "+")
        assert record["start"].tolist() == offsets.tolist() and record["length"].tolist() == sizes.tolist()
        assert "".join(record["sequence"]) == text and record["end"].iloc[-1] == len(text)


# --- what it refuses, and the summary -------------------------------------------------------------

def test_a_model_without_a_learned_tokenization_exits_2_naming_its_architecture(tmp_path, tiny_model_dir):
    result = janus("tokenize", "-r", "20:1,001-1,100", "--fasta", FASTA, "--model", tiny_model_dir,
                   "-o", tmp_path / "t.parquet")
    assert result.exit_code == 2
    assert "janus tokenize needs a model that segments sequences" in result.stderr
    assert "janusdna models do not" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "t.parquet").exists()


def test_the_default_model_is_a_shipped_model_with_a_tokenization(monkeypatch):
    shipped = [{"name": "janusdna-d48-chr20", "arch": "janusdna", "kind": "shipped"},
               {"name": "mergedna-tiny", "arch": "mergedna", "kind": "preset"}]
    monkeypatch.setattr(dnalm, "list_models", lambda: shipped)
    with pytest.raises(UsageError, match="give --model"):
        tokenize_module.default_tokenizer_model()
    shipped.append({"name": "mergedna-chr20", "arch": "mergedna", "kind": "shipped"})
    assert tokenize_module.default_tokenizer_model() == "mergedna-chr20"


@pytest.mark.parametrize("option, value, message", [
    ("--class-field", "0", "--class-field '0'"),
    ("--class-field", "x", "--class-field 'x'"),
    ("--compression-ratio", "1.5", "--compression-ratio 1.5"),
])
def test_bad_options_exit_2(tmp_path, model_dir, option, value, message):
    result = janus("tokenize", "-r", "20:1,001-1,100", "--fasta", FASTA, "--model", model_dir, option, value)
    assert result.exit_code == 2 and message in result.stderr


def test_the_summary_gives_tokens_bases_and_mean_length_per_class(tokens):
    rows, result = tokens
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == ("janus: tokenize: 6 records, 5 tokenized: 1,486 tokens, 2,974 bases, mean token length "
                         "2.00 bp; skipped: chrom_missing 1, edge 0, empty 0, n_fraction 0")
    first = lines.index("janus: tokenize: per class (field 1 of the name):")
    by_class = {line.split()[0]: line.split()[1:] for line in lines[first + 2:-1]}
    assert set(by_class) == {"enhancer", "promoter", "splice"}
    kept = rows[rows["skip_reason"].isna()]
    for name, group in kept.groupby("class"):
        records, n_tokens, n_bases, mean, _ = by_class[name]
        assert int(records) == group["name"].nunique() and int(n_tokens.replace(",", "")) == len(group)
        assert int(n_bases.replace(",", "")) == group["length"].sum()
        assert float(mean) == round(group["length"].sum() / len(group), 2)
    assert len(kept) == 1486 and kept["length"].sum() == 2974


def test_the_summary_of_a_file_counts_the_chunks_of_a_resumed_run(tmp_path, model_dir, monkeypatch):
    monkeypatch.setattr(tokenize_module, "RECORDS_PER_CHUNK", 1)
    bed = write_bed(tmp_path / "r.bed", KEPT)
    opts = tokenize_module.TokenizeOptions(inputs=bed, fasta=FASTA, model=str(model_dir), out=str(tmp_path / "t.parquet"),
                                           threads=1, quiet=True)
    full = tokenize_module.tokenize(opts, ["janus"])
    calls = []
    original = tokenize_module.tokenize_records

    def interrupted_after_two(chunk, run):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(chunk, run)

    monkeypatch.setattr(tokenize_module, "tokenize_records", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        tokenize_module.tokenize(opts, ["janus"])
    monkeypatch.setattr(tokenize_module, "tokenize_records", original)
    opts.resume = True
    resumed = tokenize_module.tokenize(opts, ["janus"])
    assert (resumed.tokens, resumed.bases, resumed.records) == (full.tokens, full.bases, full.records) == (1486, 2974, 5)


# --- janus plot tokens ------------------------------------------------------------------------------

def test_plot_tokens_writes_a_png(tmp_path, tokens):
    rows, _ = tokens
    parquet = tmp_path / "tokens.parquet"
    rows.to_parquet(parquet)
    out = tmp_path / "lengths.png"
    result = janus("plot", "tokens", parquet, "--by", "name", "--name-field", 1, "-o", out)
    assert result.exit_code == 0, result.output
    image = matplotlib.image.imread(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 300 and image.std() > 0
    result = janus("plot", "tokens", parquet, "--by", "no_such_column", "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and "no_such_column" in result.stderr and not (tmp_path / "x.png").exists()
