"""embed, likelihood and predict on sequences (a FASTA of records, a table with a sequence column)
as well as on regions: the input kind is told from the content, every record is named by its
id, and a sequence gives the same numbers as the same bases read from a reference."""

import gzip
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import DATA
from janus_cli.errors import DataError
from janus_cli.io.fasta import Reference
from janus_cli.io.sequences import BED, FASTA, TABLE, detect_input_kind
from janus_cli.main import app

REFERENCE = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"  # contig "20"
SPANS = {"first": (1000, 1120), "second": (5000, 5090)}


def janus(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def texts():
    with Reference(REFERENCE) as reference:
        return {name: reference.fetch("20", start, end) for name, (start, end) in SPANS.items()}


@pytest.fixture
def bed(tmp_path):
    path = tmp_path / "regions.bed"
    path.write_text("".join(f"20\t{start}\t{end}\t{name}\t0\t+\n" for name, (start, end) in SPANS.items()))
    return path


def write_fasta(path, texts, soft_masked=False):
    body = "".join(f">{name} some description\n{text.lower() if soft_masked else text}\n" for name, text in texts.items())
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(body)
    else:
        path.write_text(body)
    return path


def run_to_table(*args):
    result = janus(*args, "--threads", 1)
    assert result.exit_code == 0, result.output
    out = args[args.index("-o") + 1]
    return pq.read_table(out)


@pytest.mark.parametrize("content, kind", [
    ("chr1\t10\t20\n", BED),
    ("track name=x\n# comment\nchr1 10 20 a\n", BED),
    (">seq1\nACGT\n", FASTA),
    ("id,sequence,label\na,ACGT,1\n", TABLE),
    ("id\tsequence\na\tACGT\n", TABLE),
])
def test_the_input_kind_is_told_from_the_content_whatever_the_name(tmp_path, content, kind):
    plain = tmp_path / "input.txt"
    plain.write_text(content)
    zipped = tmp_path / "input.bed"  # a misleading name
    with gzip.open(zipped, "wt") as fh:
        fh.write(content)
    assert detect_input_kind(plain) == kind
    assert detect_input_kind(zipped) == kind


def test_parquet_tables_are_recognised(tmp_path):
    path = tmp_path / "t.data"
    pd.DataFrame({"sequence": ["ACGT"]}).to_parquet(path)
    assert detect_input_kind(path) == TABLE


def test_an_empty_input_says_which_kinds_are_expected(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"\(the input is empty\); expected a BED file of regions .* a FASTA of sequences .* table"):
        detect_input_kind(empty)


@pytest.mark.parametrize("form", ["fasta", "fasta.gz", "csv", "parquet"])
def test_embedding_sequences_equals_embedding_the_same_regions(tmp_path, tiny_model_dir, texts, bed, form, monkeypatch):
    monkeypatch.delenv("JANUS_FASTA", raising=False)  # sequences need no reference
    if form.startswith("fasta"):
        inputs = write_fasta(tmp_path / f"seqs.{form}", texts, soft_masked=True)
    else:
        frame = pd.DataFrame({"id": list(texts), "sequence": list(texts.values())})
        inputs = tmp_path / f"seqs.{form}"
        frame.to_csv(inputs, index=False) if form == "csv" else frame.to_parquet(inputs)
    from_sequences = run_to_table("embed", inputs, "--model", tiny_model_dir, "-o", tmp_path / "s.parquet")
    from_regions = run_to_table("embed", bed, "--fasta", REFERENCE, "--model", tiny_model_dir, "-o", tmp_path / "r.parquet")
    assert from_sequences.column_names == ["name", "embedding", "skip_reason"]
    assert from_sequences.column("name").to_pylist() == list(texts)
    assert from_sequences.column("embedding").to_pylist() == from_regions.column("embedding").to_pylist()
    assert pq.read_schema(tmp_path / "s.parquet").metadata[b"reference"] == b"none (sequences given)"


def test_windows_and_tiles_apply_to_sequences(tmp_path, tiny_model_dir, texts):
    """--window centres a window on each sequence (N beyond its ends) and records longer than the
    model (max_seq_len 256 here) are tiled, exactly as for regions."""
    long_text = texts["first"] * 4  # 480 bp
    inputs = write_fasta(tmp_path / "s.fa", {"long": long_text, "short": texts["second"]})
    windowed = run_to_table("embed", inputs, "--model", tiny_model_dir, "--window", 200, "-o", tmp_path / "w.parquet")
    contig = tmp_path / "contigs.fa"
    write_fasta(contig, {"long": long_text, "short": texts["second"]})
    as_regions = tmp_path / "r.bed"
    as_regions.write_text(f"long\t0\t{len(long_text)}\tlong\nshort\t0\t{len(texts['second'])}\tshort\n")
    regions = run_to_table("embed", as_regions, "--fasta", contig, "--model", tiny_model_dir, "--window", 200,
                           "-o", tmp_path / "r.parquet")
    assert windowed.column("embedding").to_pylist() == regions.column("embedding").to_pylist()
    tiled = run_to_table("embed", inputs, "--model", tiny_model_dir, "--per-position", "-o", tmp_path / "t.parquet")
    assert len(tiled.column("embedding").to_pylist()[0]) == len(long_text)


def test_likelihood_of_a_sequence_table_has_names_and_offsets_not_coordinates(tmp_path, tiny_model_dir, texts, bed):
    inputs = tmp_path / "seqs.tsv"
    pd.DataFrame({"name": list(texts), "seq": list(texts.values())}).to_csv(inputs, sep="\t", index=False)
    seqs = run_to_table("likelihood", inputs, "--model", tiny_model_dir, "--mutagenesis", "-o", tmp_path / "s.parquet")
    regions = run_to_table("likelihood", bed, "--fasta", REFERENCE, "--model", tiny_model_dir, "--mutagenesis",
                           "-o", tmp_path / "r.parquet")
    assert "chrom" not in seqs.column_names and seqs.column_names[:2] == ["pos", "ref"]
    first = seqs.to_pandas().query("name == 'first'")
    assert first["pos"].tolist() == list(range(len(texts["first"])))
    assert "".join(first["ref"]) == texts["first"]
    region_rows = regions.to_pandas()
    np.testing.assert_array_equal(seqs.column("llr_A").to_numpy(), region_rows["llr_A"].to_numpy())
    assert set(region_rows["pos"] - seqs.to_pandas()["pos"]) == {start for start, _ in SPANS.values()}


def test_predict_takes_sequences_from_stdin_gzipped(tmp_path, tiny_model_dir, texts):
    train = tmp_path / "train.csv"
    rows = [("ACGT" * 10, "a"), ("TTTT" * 10, "b")] * 4
    pd.DataFrame(rows, columns=["sequence", "label"]).to_csv(train, index=False)
    result = janus("finetune", train, "--model", tiny_model_dir, "--epochs", 1, "--threads", 1, "-o", tmp_path / "ft")
    assert result.exit_code == 0, result.output
    stdin = gzip.compress("".join(f">{n}\n{t}\n" for n, t in texts.items()).encode())
    result = janus("predict", "-", "--model", tmp_path / "ft", "--threads", 1, "-o", "-", input=stdin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t") == ["name", "prob_a", "prob_b", "pred_label", "skip_reason"]
    assert [line.split("\t")[0] for line in lines[1:]] == list(texts)
    probs = np.array([[float(v) for v in line.split("\t")[1:3]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("content, message", [
    (">a\nACGTXACGT\n", r"s\.fa: record 1 \('a'\): invalid DNA character 'X' at position 5"),
    (">a\nACGT\n>a\nCCCC\n", r"s\.fa: record 2 \('a'\): the id 'a' is used twice"),
    (">a\nACGT\n> \nACGT\n", r"s\.fa:3: a FASTA header needs an id after '>'"),
])
def test_bad_sequence_files_name_the_file_and_record(tmp_path, tiny_model_dir, content, message):
    path = tmp_path / "s.fa"
    path.write_text(content)
    out = tmp_path / "e.parquet"
    result = janus("embed", path, "--model", tiny_model_dir, "-o", out)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and re.search(message, result.stderr), result.stderr
    assert not out.exists()


def test_regions_cannot_be_asked_of_sequences_and_bedgraph_needs_coordinates(tmp_path, tiny_model_dir, texts):
    inputs = write_fasta(tmp_path / "s.fa", texts)
    result = janus("embed", inputs, "-r", "20:1-100", "--model", tiny_model_dir)
    assert result.exit_code == 2 and "holds sequences, not regions" in result.stderr
    result = janus("likelihood", inputs, "--model", tiny_model_dir, "-o", tmp_path / "x.bedgraph")
    assert result.exit_code == 2 and "bedGraph track needs genomic coordinates" in result.stderr


def test_a_fasta_cannot_train_a_classifier(tmp_path, tiny_model_dir, texts):
    inputs = write_fasta(tmp_path / "s.fa", texts)
    result = janus("finetune", inputs, "--model", tiny_model_dir, "-o", tmp_path / "ft")
    assert result.exit_code == 1 and "a FASTA has no labels" in result.stderr
