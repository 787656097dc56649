"""A variant's REF and ALT windows on the reference, and the checks before a variant is used:
the chromosome, the contig edges, REF against the reference, and the fraction of N. Shared by
`score-variants` (scoring) and `finetune` (training on labelled variants), so both place, check
and skip variants the same way, with the same skip reasons.

Both windows are --window bp long and anchored on the variant: the same left flank (window // 2
bases before POS), then REF or ALT, then the reference after REF up to the window length. Beyond
a contig end the flank is N (edge pad), the window moves inside the contig (shift), or the
variant is skipped (skip).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pathlib import Path
from typing import Iterator

from ..errors import DataError
from ..io import windows
from ..io.chroms import ChromMatcher
from ..io.fasta import Reference
from ..io.sequences import find_column, is_variant_file, read_table
from ..io.variants import VARIANT_SKIP_REASONS, Variant, read_variants, variant
from .runtime import log

CHECK_REF_MODES = ("skip", "warn", "error")
SKIP_REF_MISMATCH = "ref_mismatch"
SKIP_REASONS = (windows.SKIP_CHROM_MISSING, windows.SKIP_EDGE, windows.SKIP_N_FRACTION, SKIP_REF_MISMATCH,
                *VARIANT_SKIP_REASONS)
MAX_WARNINGS = 10


@dataclass
class Windows:
    """A variant's two windows, where the variant sits in them, and what the reference has where
    the VCF says REF."""

    ref_text: str
    alt_text: str
    offset: int  # the variant's first base in both windows
    reference_allele: str


def variant_windows(variant: Variant, contig: str, reference: Reference, window: int, edge: str) -> Windows | str:
    """The reference and alternative windows, read from the reference in one fetch, or the
    skip_reason (edge) when they do not fit."""
    start0 = variant.pos - 1
    contig_length = reference.lengths[contig]
    left = start0 - window // 2
    if edge == "shift":
        left = min(max(left, 0), max(contig_length - window, 0))
    elif edge == "skip" and (left < 0 or left + window > contig_length):
        return windows.SKIP_EDGE
    after = start0 + len(variant.ref)
    if after > contig_length:
        return windows.SKIP_EDGE
    flank_length = start0 - left
    right_needed = max(window - flank_length - min(len(variant.ref), len(variant.alt)), 0)
    span = reference.fetch_padded(contig, left, after + right_needed)
    flank, right = span[:flank_length], span[after - left:]
    return Windows((flank + variant.ref + right)[:window], (flank + variant.alt + right)[:window], flank_length,
                   span[flank_length:after - left])


@dataclass
class VariantPlacer:
    """Checks variants and places their windows; counts REF mismatches it warned about."""

    reference: Reference
    matcher: ChromMatcher
    window: int
    edge: str
    check_ref: str
    max_n_frac: float
    source: object  # the variants' file, for messages
    warnings: Counter = field(default_factory=Counter)

    def place(self, variant: Variant) -> Windows | str:
        """The variant's windows, or its skip_reason; a REF mismatch raises DataError with
        check_ref error, is skipped with skip, and is warned about (and used) with warn."""
        if variant.skip_reason:
            return variant.skip_reason
        contig = self.matcher(variant.chrom)
        if contig is None:
            return windows.SKIP_CHROM_MISSING
        found = variant_windows(variant, contig, self.reference, self.window, self.edge)
        if isinstance(found, str):
            return found
        actual = found.reference_allele
        if actual != variant.ref:
            if self.check_ref == "error":
                raise DataError(
                    f"{self.source}: record {variant.record_number} ({variant.chrom}:{variant.pos}): REF {variant.ref} "
                    f"does not match the reference {self.reference.path} ({actual}); check that both are the same "
                    "assembly, or use --check-ref skip or warn")
            if self.check_ref == "skip":
                return SKIP_REF_MISMATCH
            self._warn_ref(variant, actual)
        if windows.n_fraction(found.ref_text) > self.max_n_frac:
            return windows.SKIP_N_FRACTION
        return found

    def _warn_ref(self, variant: Variant, actual: str):
        """Log a REF mismatch (the first few); the VCF's REF is used."""
        self.warnings[SKIP_REF_MISMATCH] += 1
        if self.warnings[SKIP_REF_MISMATCH] <= MAX_WARNINGS:
            log(f"janus: warning: {self.source}: record {variant.record_number} ({variant.chrom}:{variant.pos}): "
                f"REF {variant.ref} but the reference has {actual}; used with the VCF's REF")

    def summarise_warnings(self):
        if self.warnings[SKIP_REF_MISMATCH] > MAX_WARNINGS:
            log(f"janus: warning: {self.warnings[SKIP_REF_MISMATCH]} REF mismatches in all (first {MAX_WARNINGS} shown)")


SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


def labelled_variants(path: str | Path, label_field: str | None, label_col: str | None
                      ) -> Iterator[tuple[Variant, str | None]]:
    """(variant with its label in .info, split or None) of a VCF/BCF whose INFO field label_field
    holds the label, or of a table with chrom, pos (1-based), ref, alt, label (or label_col) and
    an optional split column (train, val or test)."""
    if is_variant_file(path):
        if not label_field:
            raise DataError(f"{path}: a VCF of training variants needs --label-field, the INFO field holding the label")
        for found in read_variants(path, info_field=label_field):
            yield found, None
        return
    table = read_table(path, text=True)
    columns = {name: find_column(table, path, None, (name,), "the header (a table of variants has chrom, pos, ref, "
                                                            "alt and label columns)")
               for name in ("chrom", "pos", "ref", "alt")}
    label = find_column(table, path, label_col, ("label",), "--label-col")
    split = "split" if "split" in table.columns else None
    for row, record in enumerate(table.to_dict("records"), 1):
        try:
            pos = int(record[columns["pos"]])
        except ValueError:
            raise DataError(f"{path}: row {row}: pos {record[columns['pos']]!r} is not a 1-based position") from None
        where = None
        if split:
            where = SPLIT_NAMES.get(str(record[split]).lower())
            if where is None:
                raise DataError(f"{path}: row {row}: split {record[split]!r}: use train, val or test")
        yield variant(str(record[columns["chrom"]]), pos, str(record[columns["ref"]]), str(record[columns["alt"]]), row,
                      info=record[label]), where
