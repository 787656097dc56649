"""The VCF/BCF edge of score-variants: variants read from VCF (plain, gzip, bgzip), BCF or stdin,
one per ALT allele, and scores written as a bgzipped, tabix-indexed sites-only VCF.

Reading errors become DataError naming the file and the record number. Alleles that cannot be
scored are still yielded, with a skip reason, so every input ALT has a row in the output.
The VCF is written under a temporary name in the output directory and renamed into place at the
end; on any exception (KeyboardInterrupt included) the temporary files are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pysam

from ..errors import DataError
from .fasta import is_plain_gzip
from ..engine.runtime import log

STDIN = "-"

SYMBOLIC_ALLELE = "symbolic_allele"  # <DEL>, <*>, <NON_REF>, breakends
STAR_ALLELE = "star_allele"  # '*': the site is deleted by an overlapping variant
NO_ALT = "no_alt"  # ALT is '.': a reference-only site
INVALID_ALLELE = "invalid_allele"  # REF or ALT with letters other than ACGTN
VARIANT_SKIP_REASONS = (SYMBOLIC_ALLELE, STAR_ALLELE, NO_ALT, INVALID_ALLELE)

_BASES = re.compile("[ACGTN]+")
_INFO_ID_CHARS = re.compile(r"[^0-9A-Za-z_.]")
_SITE_COLUMNS = ("chrom", "pos", "id", "ref", "alt")


@dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record."""

    chrom: str
    pos: int  # 1-based, as in VCF
    id: str  # '.' when missing
    ref: str  # upper-cased
    alt: str  # upper-cased, except symbolic alleles (kept as written); '.' when the record has none
    alt_index: int  # 1-based index of this ALT in the record's ALT list; 0 when ALT is '.'
    record_number: int  # 1-based number of the data record in the file, for messages
    skip_reason: str | None  # one of VARIANT_SKIP_REASONS, or None when the variant can be scored
    info: object = None  # the value of the INFO field read_variants was asked for (per ALT for Number=A)


def variant(chrom: str, pos: int, ref: str, alt: str, record_number: int, variant_id: str = ".",
            info: object = None) -> Variant:
    """A Variant from the fields of a table row, upper-cased and checked as VCF alleles are."""
    ref, alt = ref.upper(), alt.upper()
    return Variant(chrom, pos, variant_id, ref, alt, 1, record_number, _skip_reason(ref, alt), info)


def read_variants(path: str | Path, region: tuple[str, int, int | None] | None = None,
                  info_field: str | None = None) -> Iterator[Variant]:
    """Every ALT allele of a VCF or BCF file ('-' is stdin), in file order, or only of the records
    overlapping region (chrom, 0-based start, end or None; needs an index); multi-allelic records
    give one Variant per ALT. Sample columns are not read; info_field's value goes to
    Variant.info (the ALT's own for a per-ALT field; None where the record lacks it)."""
    for record_number, record in _records(path, region):
        chrom, pos, variant_id, ref = record.chrom, record.pos, record.id or ".", record.ref.upper()
        info = record.info.get(info_field) if info_field else None
        if not record.alts:
            yield Variant(chrom, pos, variant_id, ref, ".", 0, record_number, NO_ALT, info)
            continue
        for alt_index, alt in enumerate(record.alts, 1):
            reason = _skip_reason(ref, alt.upper())
            if reason != SYMBOLIC_ALLELE:
                alt = alt.upper()
            value = info[alt_index - 1] if isinstance(info, tuple) and len(info) == len(record.alts) else info
            yield Variant(chrom, pos, variant_id, ref, alt, alt_index, record_number, reason, value)


def count_variants(path: str | Path, region: tuple[str, int, int | None] | None = None) -> int | None:
    """How many Variants read_variants(path, region) yields (one pass over the file); None for
    stdin, which can be read only once."""
    if str(path) == STDIN:
        return None
    return sum(len(record.alts) if record.alts else 1 for _, record in _records(path, region))


def _skip_reason(ref: str, alt: str) -> str | None:
    """Why an upper-cased REF/ALT pair cannot be scored, or None."""
    if alt == "*":
        return STAR_ALLELE
    if alt == ".":
        return NO_ALT
    # single breakends ('G.', '.G') are symbolic too (VCF 4.2, section 5.4.9)
    if alt.startswith("<") or "[" in alt or "]" in alt or (len(alt) > 1 and "." in (alt[0], alt[-1])):
        return SYMBOLIC_ALLELE
    if not (_BASES.fullmatch(ref) and _BASES.fullmatch(alt)):
        return INVALID_ALLELE
    return None


def _records(path: str | Path, region=None) -> Iterator[tuple[int, pysam.VariantRecord]]:
    """(record number, record) of every data record, or of those overlapping region; pysam's
    errors become DataError."""
    name = "<stdin>" if str(path) == STDIN else str(path)
    variant_file, handle = _open(path, name)
    number = 0
    try:
        if region is None:
            records = variant_file
        else:
            try:
                records = variant_file.fetch(*region)
            except ValueError as exc:
                raise DataError(f"{name}: cannot read region {region[0]}:{region[1] + 1}-{region[2] or ''} ({exc}); "
                                f"a region needs a bgzipped, indexed VCF (bgzip it and run tabix -p vcf) "
                                "or an indexed BCF, and a contig the file knows") from None
        for record in records:
            number += 1
            yield number, record
    except OSError as exc:
        # htslib says 'truncated file' both for a cut file and for a malformed record
        raise DataError(
            f"{name}: cannot read past record {number} ({exc}): the file is truncated or record "
            f"{number + 1} is malformed; check it with: bcftools view {name} > /dev/null"
        ) from None
    finally:
        # after a read error closing fails too (as TypeError when pysam reads from a file object,
        # a pysam bug in building that message); the read error is the one to report
        with contextlib.suppress(OSError, TypeError):
            variant_file.close()
        if handle is not None:
            handle.close()


def _open(path: str | Path, name: str):
    """A pysam VariantFile over the sites of path ('-' is stdin), and the Python file it reads
    from when it needs one (else None), to be closed after it."""
    source, handle = STDIN, None
    if str(path) != STDIN:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{name}: file not found")
        if path.is_dir():
            raise DataError(f"{name}: is a directory; give a VCF or BCF file")
        source = str(path)
        if path.is_file():
            if path.stat().st_size == 0:
                raise DataError(f"{name}: empty file; give a VCF or BCF file")
            if is_plain_gzip(path):
                # pysam cannot open plain gzip by name (it tries to seek in it) but streams it
                # from a file object
                source = handle = open(path, "rb")
    # without this htslib prints '[E::idx_find_and_load] Could not retrieve index file' for
    # every unindexed input, which is not an error here: the file is read from start to end
    verbosity = pysam.set_verbosity(0)
    try:
        return pysam.VariantFile(source, drop_samples=True), handle
    except ValueError as exc:
        if handle is not None:
            handle.close()
        if "valid header" in str(exc):
            raise DataError(
                f"{name}: the VCF header is missing or invalid: it needs '##fileformat=VCFv4.x' and "
                "'##' meta lines, then the '#CHROM POS ID REF ALT QUAL FILTER INFO' line before the "
                "records; add or fix the header"
            ) from None
        raise DataError(
            f"{name}: not a VCF or BCF file (empty, or no '##fileformat=VCF...' first line); give a "
            "VCF (plain, gzip or bgzip) or BCF file, adding the header if it is missing"
        ) from None
    except OSError as exc:
        if handle is not None:
            handle.close()
        raise DataError(
            f"{name}: cannot read it as VCF or BCF ({exc}); check that it is VCF or BCF and complete"
        ) from None
    finally:
        pysam.set_verbosity(verbosity)


def write_scores_vcf(
    path: Path,
    tables: Iterable[pa.Table],
    contig_lengths: dict[str, int],
    info_fields: dict[str, str],
    metadata: dict[str, str],
) -> None:
    """A bgzipped sites-only VCF of the rows of tables (columns chrom, pos, id, ref, alt,
    alt_index, skip_reason and the score columns named in info_fields, which maps each to its
    description), and its tabix index path + '.tbi' when the rows are sorted. Each score column
    becomes INFO field JANUS_<COLUMN>; nulls are left out of INFO."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give an output file name")
    info_ids = _info_ids(info_fields)
    temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    temp_index = Path(f"{temp}.tbi")
    index = Path(f"{path}.tbi")
    try:
        # pysam.BGZFile crashes the process (segfault) when it cannot create the file
        try:
            open(temp, "wb").close()
        except OSError as exc:
            raise DataError(f"{path}: cannot write the output file ({exc})") from None
        with pysam.BGZFile(str(temp), "wb") as out:
            out.write(_header(contig_lengths, info_fields, info_ids, metadata).encode())
            for table in tables:
                out.write(_body(table, info_ids).encode())
        try:
            pysam.tabix_index(str(temp), preset="vcf", index=str(temp_index), force=True)
        except OSError:
            log(
                f"janus: warning: {path}: no tabix index written: the records are not sorted by "
                f"contig and position; sort and index it with: bcftools sort -Oz -o sorted.vcf.gz "
                f"{path} && tabix -p vcf sorted.vcf.gz"
            )
        os.replace(temp, path)
        if temp_index.exists():
            os.replace(temp_index, index)
        elif index.exists():
            index.unlink()  # it belongs to an earlier file at this path
    finally:
        for leftover in (temp, temp_index):
            if leftover.exists():
                leftover.unlink()


def _info_ids(info_fields: dict[str, str]) -> dict[str, str]:
    """Score column -> INFO ID JANUS_<COLUMN>, upper-cased, characters VCF does not allow as '_'."""
    ids = {column: "JANUS_" + _INFO_ID_CHARS.sub("_", column.upper()) for column in info_fields}
    if len(set(ids.values())) < len(ids):
        raise ValueError(f"score columns {list(ids)} do not give distinct INFO IDs: {list(ids.values())}")
    return ids


def _header(contig_lengths, info_fields, info_ids, metadata) -> str:
    lines = ["##fileformat=VCFv4.2", "##source=janus"]
    lines += [f"##janus_{_INFO_ID_CHARS.sub('_', key)}={_meta_value(value)}" for key, value in metadata.items()]
    lines += [f"##contig=<ID={name},length={length}>" for name, length in contig_lengths.items()]
    lines += [_info_line(info_ids[column], "Float", info_fields[column]) for column in info_fields]
    lines += [
        _info_line("JANUS_ALT_INDEX", "Integer", "1-based index of this ALT in the input ALT list; 0 for ALT '.'"),
        _info_line("JANUS_SKIP", "String", "Why janus did not score this ALT (its scores are missing)"),
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    return "\n".join(lines) + "\n"


def _info_line(info_id: str, vcf_type: str, description: str) -> str:
    description = " ".join(description.split()).replace('"', "'")
    return f'##INFO=<ID={info_id},Number=1,Type={vcf_type},Description="{description}">'


def _meta_value(value) -> str:
    """One line; quoted when it starts with '<', which htslib would parse as a structured line."""
    text = " ".join(str(value).split())
    return f'"{text}"' if text.startswith("<") else text


def _body(table: pa.Table, info_ids: dict[str, str]) -> str:
    """The VCF data lines of a table: QUAL and FILTER '.', floats with 6 significant digits."""
    fields = [(info_id, table.column(column).to_pylist(), ".6g") for column, info_id in info_ids.items()]
    fields.append(("JANUS_ALT_INDEX", table.column("alt_index").to_pylist(), "d"))
    fields.append(("JANUS_SKIP", table.column("skip_reason").to_pylist(), "s"))
    sites = zip(*(table.column(name).to_pylist() for name in _SITE_COLUMNS))
    lines = []
    for row, site in enumerate(sites):
        info = ";".join(
            f"{info_id}={format(values[row], spec)}" for info_id, values, spec in fields if values[row] is not None
        )
        lines.append("\t".join(map(str, site)) + f"\t.\t.\t{info or '.'}\n")
    return "".join(lines)
