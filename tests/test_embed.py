"""janus embed and the inference pieces under it (reference lookup, chromosome names, windows,
batched runner, atomic Parquet output), checked against the model run directly."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import janusdna
from conftest import DATA
from janus_cli.commands import embed as embed_module
from janus_cli.io import windows
from janus_cli.errors import UsageError
from janus_cli.io.fasta import Reference
from janus_cli.main import app
from janus_cli.io.reference_config import resolve_fasta

FASTA = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"  # contig "20", local coordinates 0..200,000
EXONS = DATA / "refseq_exons_chr20_30.0-30.2Mb_local.bed"  # real exons, spelled "chr20"
CONTIG_LENGTH = 200_000


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def model(model_dir):
    return janusdna.load(model_dir)


def janus(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def embed_to_parquet(tmp_path, model_dir, bed_lines, *options):
    bed = tmp_path / "regions.bed"
    bed.write_text("".join("\t".join(map(str, fields)) + "\n" for fields in bed_lines))
    out = tmp_path / "emb.parquet"
    result = janus("embed", bed, "--fasta", FASTA, "--model", model_dir, "--threads", 1, "-o", out, *options)
    assert result.exit_code == 0, result.output
    return pq.read_table(out), result


def hidden(model, sequence: str) -> torch.Tensor:
    with torch.inference_mode():
        return model.hidden_states(janusdna.encode(sequence)[None])[0]


def hidden_rc_mapped_back(model, sequence: str) -> torch.Tensor:
    with torch.inference_mode():
        return model.hidden_states(janusdna.reverse_complement(janusdna.encode(sequence))[None])[0].flip(0)


def fetch(start, end):
    with Reference(FASTA) as reference:
        return reference.fetch("20", start, end)


def test_real_exons_with_chr_prefix_embed_to_parquet_with_metadata(tmp_path, model_dir):
    out = tmp_path / "exons.parquet"
    result = janus("embed", EXONS, "--fasta", FASTA, "--model", model_dir, "--threads", 1, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("chromosome chr20 matched to reference contig 20") == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "janus: embed: 34 records, 34 embedded, skipped: chrom_missing 0, edge 0, empty 0, n_fraction 0")
    table = pq.read_table(out)
    assert table.column_names == ["chrom", "start", "end", "name", "strand", "embedding", "skip_reason"]
    embedding_type = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding_type) and embedding_type.list_size == 16
    assert embedding_type.value_type == pa.float32()
    assert table.column("name").to_pylist()[:2] == ["245934", "245935"]
    assert table.column("start").to_pylist()[0] == 424 and table.column("chrom").to_pylist()[0] == "chr20"
    assert table.column("skip_reason").null_count == 34
    metadata = {k.decode(): v.decode() for k, v in pq.read_metadata(out).metadata.items()}
    assert metadata["janus_version"] == janusdna.__version__
    assert metadata["model_weights_sha256"] == janusdna.weights_sha256(model_dir)
    assert metadata["rc"] == "avg" and metadata["dtype"] == "float32" and metadata["window"] == "region"
    assert metadata["command_line"].startswith("janus ")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_mean_pooling_is_the_model_mean_and_batch_mates_do_not_matter(tmp_path, model_dir, model):
    target = ("20", 1000, 1100, "target")
    alone, _ = embed_to_parquet(tmp_path, model_dir, [target], "--rc", "none")
    mates = [("20", s, s + 100, f"m{s}") for s in range(2000, 9000, 1000)] + [("20", 500, 700, "longer")]
    batched, _ = embed_to_parquet(tmp_path, model_dir, mates[:3] + [target] + mates[3:], "--rc", "none",
                                  "--batch-size", 4)
    alone_embedding = np.array(alone.column("embedding")[0].as_py())
    assert np.array_equal(alone_embedding, np.array(batched.column("embedding")[3].as_py()))
    expected = hidden(model, fetch(1000, 1100)).mean(0).numpy()
    np.testing.assert_allclose(alone_embedding, expected, rtol=1e-5, atol=1e-6)


def test_rc_avg_per_position_is_the_average_of_both_strands_mapped_back(tmp_path, model_dir, model):
    table, _ = embed_to_parquet(tmp_path, model_dir, [("20", 1000, 1040, "r")], "--per-position")
    per_position = np.array(table.column("embedding")[0].as_py())
    sequence = fetch(1000, 1040)
    expected = (hidden(model, sequence) + hidden_rc_mapped_back(model, sequence)) / 2
    assert per_position.shape == (40, 16)
    np.testing.assert_allclose(per_position, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_minus_strand_is_the_plus_embedding_of_the_reverse_complement(tmp_path, model_dir, model):
    table, _ = embed_to_parquet(tmp_path, model_dir, [("20", 1000, 1100, "r", 0, "-")], "--rc", "none")
    rc_sequence = janusdna.decode(janusdna.reverse_complement(janusdna.encode(fetch(1000, 1100))))
    np.testing.assert_allclose(np.array(table.column("embedding")[0].as_py()),
                               hidden(model, rc_sequence).mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_long_region_is_tiled_and_rc_both_keeps_the_strands_apart(tmp_path, model_dir, model):
    table, _ = embed_to_parquet(tmp_path, model_dir, [("20", 5000, 5600, "long")], "--rc", "both",
                                "--pooling", "center")
    sequence = fetch(5000, 5600)
    spans = windows.tile_spans(600, 256, 64)
    assert spans == [(0, 256), (192, 448), (344, 600)]
    center_tile = hidden(model, sequence[192:448])  # position 300 is covered by this tile only
    np.testing.assert_allclose(np.array(table.column("embedding")[0].as_py()), center_tile[300 - 192].numpy(),
                               rtol=1e-5, atol=1e-6)
    center_tile_rc = hidden_rc_mapped_back(model, sequence[192:448])
    np.testing.assert_allclose(np.array(table.column("embedding_rc")[0].as_py()),
                               center_tile_rc[300 - 192].numpy(), rtol=1e-5, atol=1e-6)


def test_unusable_records_are_kept_with_a_skip_reason(tmp_path, model_dir):
    records = [
        ("20", 1000, 1100, "ok"),
        ("chrX", 1000, 1100, "other_chrom"),
        ("20", CONTIG_LENGTH + 1000, CONTIG_LENGTH + 1050, "off_contig"),
        ("20", CONTIG_LENGTH - 20, CONTIG_LENGTH, "mostly_padding"),
        ("20", 3000, 3000, "point"),  # a window is centred on it
    ]
    table, result = embed_to_parquet(tmp_path, model_dir, records, "--window", 200)
    assert table.column("skip_reason").to_pylist() == [None, "chrom_missing", "edge", "n_fraction", None]
    assert table.column("embedding").null_count == 3
    assert "5 records, 2 embedded, skipped: chrom_missing 1, edge 1, empty 0, n_fraction 1" in result.stderr
    without_window, _ = embed_to_parquet(tmp_path, model_dir, records[4:])
    assert without_window.column("skip_reason").to_pylist() == ["empty"]
    skipped, _ = embed_to_parquet(tmp_path, model_dir, records[3:4], "--window", 200, "--edge", "skip")
    assert skipped.column("skip_reason").to_pylist() == ["edge"]
    shifted, _ = embed_to_parquet(tmp_path, model_dir, records[3:4], "--window", 200, "--edge", "shift")
    assert shifted.column("skip_reason").to_pylist() == [None]


def test_fit_to_contigs_pads_shifts_or_skips():
    import pandas as pd

    df = windows.centered(pd.DataFrame({"chrom": ["a", "a"], "start": [10, 95], "end": [11, 96]}), 20)
    assert df[["start", "end"]].values.tolist() == [[0, 20], [85, 105]]
    lengths = pd.Series([100, 100])
    padded = windows.fit_to_contigs(df, lengths, "pad")
    assert padded[["start", "end", "pad_left", "pad_right"]].values.tolist() == [[0, 20, 0, 0], [85, 100, 0, 5]]
    shifted = windows.fit_to_contigs(df, lengths, "shift")
    assert shifted[["start", "end"]].values.tolist() == [[0, 20], [80, 100]]
    assert windows.fit_to_contigs(df, lengths, "skip")["skip_reason"].tolist()[1] == "edge"


def test_alias_file_maps_other_names(tmp_path, model_dir):
    alias = tmp_path / "alias.tsv"
    alias.write_text("NC_000020.10\t20\n")
    table, result = embed_to_parquet(tmp_path, model_dir, [("NC_000020.10", 1000, 1100, "r")],
                                     "--chrom-alias", alias)
    assert table.column("skip_reason").to_pylist() == [None] and "note" not in result.stderr


def test_an_interrupted_run_leaves_no_output_and_resume_finishes_it(tmp_path, model_dir, monkeypatch):
    monkeypatch.setattr(embed_module, "RECORDS_PER_CHUNK", 2)
    real_run = embed_module.WindowRunner.run
    calls = []

    def interrupt_on_second_chunk(self, windows_ids):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(self, windows_ids)

    bed = tmp_path / "r.bed"
    bed.write_text("".join(f"20\t{s}\t{s + 50}\n" for s in range(0, 500, 100)))
    out = tmp_path / "emb.parquet"
    opts = embed_module.EmbedOptions(inputs=bed, out=str(out), fasta=FASTA, model=str(model_dir), threads=1)
    with monkeypatch.context() as patch:
        patch.setattr(embed_module.WindowRunner, "run", interrupt_on_second_chunk)
        with pytest.raises(KeyboardInterrupt):
            embed_module.embed(opts, argv=["janus", "embed"])
    assert len(calls) == 2 and not out.exists()
    assert [p.name for p in (tmp_path / ".emb.parquet.partial").glob("chunk-*")] == ["chunk-000000000.parquet"]

    opts.resume = True
    assert embed_module.embed(opts, argv=["janus", "embed"])[None] == 5
    resumed = pq.read_table(out)
    opts.resume, opts.out = False, str(tmp_path / "uninterrupted.parquet")
    embed_module.embed(opts, argv=["janus", "embed"])
    assert resumed.equals(pq.read_table(opts.out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "r.bed", "uninterrupted.parquet"]


@pytest.mark.parametrize("content, message", [
    ("20\t100\t50\n", "regions.bed:1: need 0 <= start <= end"),
    ("# header\n20\t100\t1x0\n", "regions.bed:2: start and end must be integers"),
    ("track name=x\n", "regions.bed: no BED records"),
    ("chr7\t100\t200\n", "regions.bed: record 1: chromosome 'chr7' is not in"),
])
def test_bad_bed_exits_1_naming_file_and_line_without_output(tmp_path, model_dir, content, message):
    bed = tmp_path / "regions.bed"
    bed.write_text(content)
    out = tmp_path / "emb.parquet"
    result = janus("embed", bed, "--fasta", FASTA, "--model", model_dir, "-o", out)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.startswith("janus: error: ")
    assert not out.exists()


def test_unwritable_output_directory_exits_1(read_only_dir, model_dir):
    result = janus("embed", "-r", "20:1001-1100", "--fasta", FASTA, "--model", model_dir,
                   "-o", read_only_dir / "emb.parquet")
    assert result.exit_code == 1 and str(read_only_dir / "emb.parquet") in result.stderr
    assert "Permission denied" in result.stderr and "choose a writable output directory" in result.stderr
    assert list(read_only_dir.iterdir()) == []


def test_bed_on_stdin(tmp_path, model_dir):
    bed = "browser position 20:1-100\n20\t1000\t1100\tfrom_stdin\n"
    result = CliRunner().invoke(app, ["embed", "-", "--fasta", str(FASTA), "--model", str(model_dir),
                                      "--threads", "1"], input=bed)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("20\t1000\t1100\tfrom_stdin\t.\t")


def test_missing_output_directory_exits_1(tmp_path, model_dir):
    out = tmp_path / "no_such_dir" / "emb.parquet"
    result = janus("embed", "-r", "20:1001-1100", "--fasta", FASTA, "--model", model_dir, "-o", out)
    assert result.exit_code == 1 and str(out) in result.stderr and not out.exists()


def test_tsv_on_stdout_matches_parquet(tmp_path, model_dir):
    out = tmp_path / "emb.parquet"
    args = ["embed", "-r", "20:1001-1100", "-r", "chr20:2001-2100", "--fasta", FASTA, "--model", model_dir,
            "--threads", 1]
    assert janus(*args, "-o", out).exit_code == 0
    result = subprocess.run([sys.executable, "-m", "janus_cli", *map(str, args), "-o", "-"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header == "chrom\tstart\tend\tname\tstrand\tembedding\tskip_reason"
    assert rows[1].split("\t")[:5] == ["chr20", "2000", "2100", "chr20:2001-2100", "."]
    tsv_embedding = np.array(rows[0].split("\t")[5].split(","), dtype=np.float32)
    np.testing.assert_allclose(tsv_embedding, pq.read_table(out).column("embedding")[0].as_py(), rtol=1e-6)
    assert rows[0].endswith("\t.") and "janus: embed: 2 records" in result.stderr


def test_without_a_reference_it_is_a_usage_error(tmp_path, model_dir, monkeypatch):
    monkeypatch.delenv("JANUS_FASTA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    result = janus("embed", "-r", "20:1001-1100", "--model", model_dir)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "JANUS_FASTA" in result.stderr


def test_reference_comes_from_option_then_environment_then_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("JANUS_FASTA", raising=False)
    with pytest.raises(UsageError):
        resolve_fasta(None)
    (tmp_path / "janus").mkdir()
    (tmp_path / "janus" / "config.toml").write_text('fasta = "/data/from_config.fa"\n')
    assert str(resolve_fasta(None)) == "/data/from_config.fa"
    monkeypatch.setenv("JANUS_FASTA", "/data/from_env.fa")
    assert str(resolve_fasta(None)) == "/data/from_env.fa"
    assert str(resolve_fasta("/data/given.fa")) == "/data/given.fa"


def test_real_bed_with_empty_strand_column_reads_as_unstranded():
    from pathlib import Path

    from janus_cli.io.intervals import read_bed

    bed = Path(__file__).resolve().parents[1] / "examples/data/hg38_chr21/genomic_benchmarks_regions_22-23Mb.bed"
    regions = read_bed(bed)
    assert len(regions) == 127
    assert set(regions["strand"]) == {"+", "."} and (regions["strand"] == ".").sum() == 46


def test_gzipped_bed_on_stdin(tmp_path, model_dir):
    import gzip

    bed = gzip.compress(b"track name=x\n20\t1000\t1100\tzipped\n")
    result = CliRunner().invoke(app, ["embed", "-", "--fasta", str(FASTA), "--model", str(model_dir),
                                      "--threads", "1"], input=bed)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("20\t1000\t1100\tzipped\t.\t")


@pytest.mark.parametrize("content, message", [
    (b"", "no BED records"),
    (None, "is the file truncated"),  # half of a gzipped BED
])
def test_empty_or_truncated_bed_exits_1_without_output(tmp_path, model_dir, content, message):
    import gzip

    if content is None:
        whole = gzip.compress("".join(f"20\t{s}\t{s + 50}\tr{s}\n" for s in range(0, 100_000, 100)).encode())
        content = whole[:len(whole) // 2]
    bed = tmp_path / "regions.bed.gz"
    bed.write_bytes(content)
    out = tmp_path / "emb.parquet"
    result = janus("embed", bed, "--fasta", FASTA, "--model", model_dir, "-o", out)
    assert result.exit_code == 1 and message in result.stderr and str(bed) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regions.bed.gz"]


def test_identical_windows_are_computed_once(model):
    from janus_cli.engine.inference import WindowRunner

    runner = WindowRunner(model, torch.device("cpu"), rc="avg", batch_size=4)
    computed = []
    real_compute = runner.output.compute

    class Counting:
        name = runner.output.name
        to_forward_strand = staticmethod(runner.output.to_forward_strand)

        @staticmethod
        def compute(m, ids):
            computed.append(len(ids))
            return real_compute(m, ids)

    runner.output = Counting
    a, b = janusdna.encode("ACGT" * 20), janusdna.encode("TTGCA" * 16)
    outputs = runner.run([a, b, a, a, b])
    assert sum(computed) == 2 * 2  # two distinct windows, each on both strands
    assert torch.equal(outputs[0].forward, outputs[3].forward) and torch.equal(outputs[1].reverse, outputs[4].reverse)


def test_a_window_pooling_of_the_architecture_is_its_own_and_tiles_are_length_weighted(tmp_path, tiny_hybridna_dir):
    """HybriDNA's default pooling, echo, needs the whole window: each tile is pooled by the model
    (both strands averaged), and a long record is the mean of its tiles weighted by the bases
    each provides (tiles of 256 overlapping by 64 over 600 bp own 224, 172 and 204 bases)."""
    model = janusdna.load(tiny_hybridna_dir)

    def echo(text):
        ids = janusdna.encode(text)[None]
        with torch.inference_mode():
            forward = model.sequence_embedding(ids, "echo")[0]
            reverse = model.sequence_embedding(janusdna.reverse_complement(ids), "echo")[0]
        return (forward + reverse) / 2

    table, _ = embed_to_parquet(tmp_path, tiny_hybridna_dir, [("20", 1000, 1100), ("20", 2000, 2600)])
    short, long = (np.array(v) for v in table.column("embedding").to_pylist())
    np.testing.assert_allclose(short, echo(fetch(1000, 1100)).numpy(), rtol=1e-5, atol=1e-6)
    text = fetch(2000, 2600)
    tiles = [echo(text[a:b]) for a, b in [(0, 256), (192, 448), (344, 600)]]
    expected = (224 * tiles[0] + 172 * tiles[1] + 204 * tiles[2]) / 600
    np.testing.assert_allclose(long, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert pq.read_schema(tmp_path / "emb.parquet").metadata[b"pooling"] == b"echo"
    result = janus("embed", "-r", "20:1001-1100", "--fasta", FASTA, "--model", tiny_hybridna_dir, "--pooling", "center")
    assert result.exit_code == 0, result.output
    result = janus("embed", "-r", "20:1001-1100", "--fasta", FASTA, "--model", janusdna.DEFAULT_MODEL, "--pooling", "echo")
    assert result.exit_code == 2 and "a janusdna model pools by mean, max, center, last" in result.stderr
