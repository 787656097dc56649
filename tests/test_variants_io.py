"""janus_cli.io.variants: reading VCF/BCF into one row per ALT, and writing the scores VCF.

Expectations come from plain-text parses of the decompressed files (gzip module), not from the
code under test.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pysam
import pytest

from janus_cli.errors import DataError
from janus_cli.io.variants import (
    INVALID_ALLELE,
    NO_ALT,
    STAR_ALLELE,
    SYMBOLIC_ALLELE,
    VARIANT_SKIP_REASONS,
    Variant,
    count_variants,
    read_variants,
    write_scores_vcf,
)

REPO = Path(__file__).resolve().parents[1]
PLATINUM = REPO / "examples/data/hg38_chr21/platinum_NA12878_chr21_22-23Mb.vcf.gz"
GIAB = REPO / "examples/data/hg38_chr21/giab_ashkenazim_trio_chr21_22-23Mb.vcf.gz"
G1K = REPO / "tests/data/1000G_phase3_subset_chr20.vcf.gz"
RECORDS = {PLATINUM: 1580, GIAB: 1764, G1K: 1120}

HEADER = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=chr1,length=1000>\n"
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


def text_records(path: Path) -> list[list[str]]:
    """The first five columns of every data line, from the decompressed text."""
    with gzip.open(path, "rt") as fh:
        return [line.split("\t", 5)[:5] for line in fh if not line.startswith("#")]


def expected_rows(path: Path) -> list[tuple]:
    """(chrom, pos, id, ref, alt, alt_index, record_number) per ALT, from the text."""
    rows = []
    for number, (chrom, pos, vid, ref, alts) in enumerate(text_records(path), 1):
        for alt_index, alt in enumerate(alts.split(","), 1):
            rows.append((chrom, int(pos), vid, ref.upper(), alt.upper(), alt_index, number))
    return rows


def as_rows(variants) -> list[tuple]:
    return [(v.chrom, v.pos, v.id, v.ref, v.alt, v.alt_index, v.record_number) for v in variants]


def write_vcf(tmp_path: Path, name: str, body: str, header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + body)
    return path


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(RECORDS), ids=lambda p: p.name)
def test_every_alt_of_every_record_in_file_order(path):
    records = text_records(path)
    assert len(records) == RECORDS[path]
    expected = expected_rows(path)
    variants = list(read_variants(path))
    assert as_rows(variants) == expected
    assert count_variants(path) == len(expected)
    assert count_variants(str(path)) == len(expected)


@pytest.mark.parametrize("path", [PLATINUM, G1K], ids=lambda p: p.name)
def test_multiallelic_records_are_split_keeping_alt_index(path):
    multi = {n for n, rec in enumerate(text_records(path), 1) if "," in rec[4]}
    assert multi, "the file should have multi-allelic records"
    variants = list(read_variants(path))
    for number in multi:
        split = [v for v in variants if v.record_number == number]
        assert [v.alt_index for v in split] == list(range(1, len(split) + 1))
        assert len(split) >= 2 and len({(v.chrom, v.pos, v.ref) for v in split}) == 1
    assert all(v.skip_reason is None for v in variants)


def test_star_alleles_of_a_gvcf_derived_file():
    stars = [rec for rec in text_records(GIAB) if rec[4] == "*"]
    assert len(stars) == 10
    skipped = [v for v in read_variants(GIAB) if v.skip_reason is not None]
    assert [(v.chrom, str(v.pos), v.alt) for v in skipped] == [(c, p, "*") for c, p, *_ in stars]
    assert {v.skip_reason for v in skipped} == {STAR_ALLELE}


def test_every_skip_reason(tmp_path):
    body = (
        "chr1\t10\trs1\tA\t<DEL>,<*>,<NON_REF>,G[chr1:50[,]chr1:50]G,G.\t.\t.\t.\n"
        "chr1\t20\t.\tC\t*,t\t.\t.\t.\n"
        "chr1\t30\t.\tG\t.\t.\t.\t.\n"
        "chr1\t40\t.\tacgtn\tRYK,a\t.\t.\t.\n"
        "chr1\t50\t.\tR\tA\t.\t.\t.\n"
    )
    variants = list(read_variants(write_vcf(tmp_path, "skips.vcf", body)))
    assert [(v.pos, v.ref, v.alt, v.alt_index, v.record_number, v.skip_reason) for v in variants] == [
        (10, "A", "<DEL>", 1, 1, SYMBOLIC_ALLELE),
        (10, "A", "<*>", 2, 1, SYMBOLIC_ALLELE),
        (10, "A", "<NON_REF>", 3, 1, SYMBOLIC_ALLELE),
        (10, "A", "G[chr1:50[", 4, 1, SYMBOLIC_ALLELE),
        (10, "A", "]chr1:50]G", 5, 1, SYMBOLIC_ALLELE),
        (10, "A", "G.", 6, 1, SYMBOLIC_ALLELE),
        (20, "C", "*", 1, 2, STAR_ALLELE),
        (20, "C", "T", 2, 2, None),
        (30, "G", ".", 0, 3, NO_ALT),
        (40, "ACGTN", "RYK", 1, 4, INVALID_ALLELE),
        (40, "ACGTN", "A", 2, 4, None),
        (50, "R", "A", 1, 5, INVALID_ALLELE),
    ]
    assert variants[0].id == "rs1" and variants[-1].id == "."
    assert set(VARIANT_SKIP_REASONS) == {SYMBOLIC_ALLELE, STAR_ALLELE, NO_ALT, INVALID_ALLELE}
    assert {v.skip_reason for v in variants} == set(VARIANT_SKIP_REASONS) | {None}
    assert count_variants(tmp_path / "skips.vcf") == len(variants)


def test_bcf_and_plain_gzip_read_like_the_bgzipped_vcf(tmp_path):
    bcf = tmp_path / "platinum.bcf"
    with pysam.VariantFile(str(PLATINUM)) as src, pysam.VariantFile(str(bcf), "wb", header=src.header) as out:
        for record in src:
            out.write(record)
    assert bcf.read_bytes()[:2] == b"\x1f\x8b"
    plain_gzip = tmp_path / "platinum_plain.vcf.gz"
    plain_gzip.write_bytes(gzip.compress(gzip.decompress(PLATINUM.read_bytes())))
    plain = tmp_path / "platinum.vcf"
    plain.write_bytes(gzip.decompress(PLATINUM.read_bytes()))
    expected = expected_rows(PLATINUM)
    for path in (bcf, plain_gzip, plain):
        assert as_rows(read_variants(path)) == expected, path.name
        assert count_variants(path) == len(expected), path.name


STDIN_SCRIPT = (
    "import sys\n"
    "from janus_cli.errors import DataError\n"
    "from janus_cli.io.variants import count_variants, read_variants\n"
    "try:\n"
    "    rows = list(read_variants('-'))\n"
    "except DataError as exc:\n"
    "    sys.exit(f'DataError: {exc}')\n"
    "print(len(rows), sum(v.alt_index > 1 for v in rows), rows[-1].record_number, count_variants('-'))\n"
)


def run_on_stdin(data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", STDIN_SCRIPT], input=data, capture_output=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "bgzipped"])
def test_stdin(compressed):
    data = PLATINUM.read_bytes()
    expected = expected_rows(PLATINUM)
    done = run_on_stdin(data if compressed else gzip.decompress(data))
    assert done.returncode == 0, done.stderr.decode()
    n_extra_alts = sum(row[5] > 1 for row in expected)
    assert done.stdout.decode().split() == [str(len(expected)), str(n_extra_alts), "1580", "None"]


def test_truncated_stdin_names_the_last_good_record():
    data = PLATINUM.read_bytes()
    done = run_on_stdin(data[: len(data) // 2])
    assert done.returncode == 1
    message = done.stderr.decode().strip().splitlines()[-1]
    match = re.search(r"DataError: <stdin>: cannot read past record (\d+) .*truncated", message)
    assert match, message
    assert 0 < int(match.group(1)) < 1580


BAD_INPUTS = {
    # name: (file content, words the message must contain)
    "no_header.vcf": (b"chr1\t10\t.\tA\tC\t.\t.\t.\n", "not a VCF or BCF"),
    "no_chrom_line.vcf": (b"##fileformat=VCFv4.2\nchr1\t10\t.\tA\tC\t.\t.\t.\n", "#CHROM"),
    "empty.vcf": (b"", "empty file"),
    "garbage.txt": (b"Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n", "not a VCF or BCF"),
    "garbage.vcf.gz": (gzip.compress(b"Lorem ipsum\n"), "not a VCF or BCF"),
    "truncated.vcf.gz": (PLATINUM.read_bytes()[: PLATINUM.stat().st_size // 2], "truncated"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_data_error_naming_the_file(tmp_path, name):
    content, words = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(content)
    for read in (lambda p: list(read_variants(p)), count_variants):
        with pytest.raises(DataError) as info:
            read(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'absent.vcf'))}: file not found"):
        list(read_variants(tmp_path / "absent.vcf"))
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}: is a directory"):
        list(read_variants(tmp_path))


def test_truncated_inside_the_data_names_the_last_good_record(tmp_path):
    """Cut in half with the BGZF end-of-file marker put back: pysam opens it and fails mid-way."""
    eof_marker = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
    data = PLATINUM.read_bytes()
    assert data.endswith(eof_marker)
    path = tmp_path / "cut.vcf.gz"
    path.write_bytes(data[: len(data) // 2] + eof_marker)
    rows = []
    with pytest.raises(DataError) as info:
        rows.extend(read_variants(path))
    last_good = rows[-1].record_number
    assert f"{path}: cannot read past record {last_good} " in str(info.value)
    assert as_rows(rows) == expected_rows(PLATINUM)[: len(rows)]


def test_malformed_record_names_the_record(tmp_path):
    body = "chr1\t10\t.\tA\tC\t.\t.\t.\nchr1\tten\t.\tA\tC\t.\t.\t.\nchr1\t30\t.\tA\tC\t.\t.\t.\n"
    path = write_vcf(tmp_path, "bad_pos.vcf", body)
    with pytest.raises(DataError, match=r"cannot read past record 1 .* record 2 is malformed"):
        list(read_variants(path))


# --- writing ---------------------------------------------------------------------------------

INFO_FIELDS = {
    "score": "log-likelihood ratio ALT vs REF",
    "prob_H3K4me3_ref": "P(H3K4me3) of the REF sequence",
    "prob_H3K4me3_alt": "P(H3K4me3) of the ALT sequence",
    "prob_H3K4me3_diff": 'ALT minus REF, "diff"',
}
CONTIGS = {"chr21": 46709983}


def score_table(variants: list[Variant]) -> pa.Table:
    """A table shaped like score-variants' output, with made-up scores (null when skipped)."""
    scored = [v.skip_reason is None for v in variants]
    score = [(v.pos % 1000) / 7.0 - 70 if ok else None for v, ok in zip(variants, scored)]
    ref_p = [(v.pos % 97) / 97 if ok else None for v, ok in zip(variants, scored)]
    alt_p = [(v.pos % 89) / 89 if ok else None for v, ok in zip(variants, scored)]
    return pa.table(
        {
            "chrom": [v.chrom for v in variants],
            "pos": pa.array([v.pos for v in variants], pa.int64()),
            "id": [v.id for v in variants],
            "ref": [v.ref for v in variants],
            "alt": [v.alt for v in variants],
            "alt_index": pa.array([v.alt_index for v in variants], pa.int32()),
            "score": pa.array(score, pa.float32()),
            "prob_H3K4me3_ref": ref_p,
            "prob_H3K4me3_alt": alt_p,
            "prob_H3K4me3_diff": [None if r is None else a - r for r, a in zip(ref_p, alt_p)],
            "skip_reason": pa.array([v.skip_reason for v in variants], pa.string()),
        }
    )


def test_scores_vcf_round_trip(tmp_path):
    table = score_table(list(read_variants(GIAB)))
    out = tmp_path / "scores.vcf.gz"
    metadata = {"version": "0.1", "command": "janus score-variants\n--model x", "options": "<not a struct>"}
    write_scores_vcf(out, [table.slice(0, 1000), table.slice(1000)], CONTIGS, INFO_FIELDS, metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.vcf.gz", "scores.vcf.gz.tbi"]

    text = gzip.decompress(out.read_bytes()).decode()
    meta = [line for line in text.splitlines() if line.startswith("##")]
    assert meta[:2] == ["##fileformat=VCFv4.2", "##source=janus"]
    assert "##janus_command=janus score-variants --model x" in meta
    assert '##janus_options="<not a struct>"' in meta
    assert "##contig=<ID=chr21,length=46709983>" in meta
    assert text.splitlines()[len(meta)] == "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"

    with pysam.VariantFile(str(out)) as vcf:
        header = vcf.header
        assert header.contigs["chr21"].length == 46709983
        generic = {record.key: record.value for record in header.records if record.type == "GENERIC"}
        assert generic["source"] == "janus" and generic["janus_version"] == "0.1"
        for column, description in INFO_FIELDS.items():
            info = header.info[f"JANUS_{column.upper()}"]
            assert (info.number, info.type) == (1, "Float")
            assert info.description == description.replace('"', "'")
        assert (header.info["JANUS_ALT_INDEX"].type, header.info["JANUS_SKIP"].type) == ("Integer", "String")
        records = list(vcf)

        assert len(records) == table.num_rows
        rows = table.to_pylist()
        for record, row in zip(records, rows):
            assert (record.chrom, record.pos, record.id or ".", record.ref) == (
                row["chrom"], row["pos"], row["id"], row["ref"]
            )
            assert record.alts[0] == row["alt"] and record.qual is None and not record.filter
            assert record.info["JANUS_ALT_INDEX"] == row["alt_index"]
            assert record.info.get("JANUS_SKIP") == row["skip_reason"]
            for column in INFO_FIELDS:
                value = record.info.get(f"JANUS_{column.upper()}")
                if row[column] is None:
                    assert value is None
                else:
                    assert value == pytest.approx(row[column], rel=1e-5, abs=1e-12)

        start, end = 22_400_000, 22_500_000
        fetched = [r.pos for r in vcf.fetch("chr21", start, end)]
        assert fetched == [pos for pos in table.column("pos").to_pylist() if start < pos <= end]
        assert len(fetched) > 10


def test_six_significant_digits_and_empty_info(tmp_path):
    table = pa.table(
        {
            "chrom": ["chr21", "chr21"],
            "pos": pa.array([100, 200], pa.int64()),
            "id": ["rs1", "."],
            "ref": ["A", "C"],
            "alt": ["G", "T"],
            "alt_index": pa.array([1, None], pa.int64()),
            "score": [-0.000123456789, None],
            "skip_reason": pa.array([None, None], pa.string()),
        }
    )
    out = tmp_path / "small.vcf.gz"
    write_scores_vcf(out, [table], CONTIGS, {"score": "s"}, {})
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert lines[-2:] == [
        "chr21\t100\trs1\tA\tG\t.\t.\tJANUS_SCORE=-0.000123457;JANUS_ALT_INDEX=1",
        "chr21\t200\t.\tC\tT\t.\t.\t.",
    ]


def test_unsorted_rows_keep_the_vcf_without_index(tmp_path, capsys):
    variants = list(read_variants(PLATINUM))
    table = score_table(variants)
    out = tmp_path / "unsorted.vcf.gz"
    stale_index = tmp_path / "unsorted.vcf.gz.tbi"
    stale_index.write_bytes(b"an index of an earlier file")
    write_scores_vcf(out, [table.slice(800), table.slice(0, 800)], CONTIGS, INFO_FIELDS, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unsorted.vcf.gz"]
    err = capsys.readouterr().err
    assert "warning" in err and str(out) in err and "bcftools sort" in err
    with pysam.VariantFile(str(out)) as vcf:
        assert [r.pos for r in vcf] == table.slice(800).column("pos").to_pylist() + table.slice(
            0, 800
        ).column("pos").to_pylist()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_mid_write_leaves_no_output(tmp_path, error):
    table = score_table(list(read_variants(PLATINUM)))

    def tables():
        yield table.slice(0, 500)
        raise error("scoring failed")

    out = tmp_path / "scores.vcf.gz"
    with pytest.raises(error):
        write_scores_vcf(out, tables(), CONTIGS, INFO_FIELDS, {})
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"an earlier complete output")
    with pytest.raises(error):
        write_scores_vcf(out, tables(), CONTIGS, INFO_FIELDS, {})
    assert [p.name for p in tmp_path.iterdir()] == ["scores.vcf.gz"]
    assert out.read_bytes() == b"an earlier complete output"


def test_unwritable_output_is_a_data_error(tmp_path):
    # pysam.BGZFile would crash the interpreter here; the writer must check first
    out = tmp_path / "no_such_dir" / "scores.vcf.gz"
    with pytest.raises(DataError, match=r"cannot write the output file"):
        write_scores_vcf(out, [], CONTIGS, INFO_FIELDS, {})
    with pytest.raises(DataError, match=r"is a directory"):
        write_scores_vcf(tmp_path, [], CONTIGS, INFO_FIELDS, {})
