"""Chromosome names of input files matched to the reference's contig names.

Order: the exact name; then the usual UCSC/Ensembl spellings (chr20 <-> 20, chrM <-> MT), noted
once per name on stderr; then a user alias table (--chrom-alias: two tab-separated columns, input
name and reference name). A name that matches nothing gives None: the caller skips the record.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .fasta import open_text
from ..engine.runtime import log

MITOCHONDRIAL = ("chrM", "MT")


def read_alias_table(path: str | Path) -> dict[str, str]:
    """Two-column TSV (input name, reference name); blank and '#' lines skipped."""
    aliases = {}
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2 or not all(fields):
                raise DataError(f"{path}:{lineno}: an alias line needs two tab-separated names "
                                f"(input name, reference name), got {line.rstrip()!r}")
            aliases[fields[0]] = fields[1]
    return aliases


def conventional_alternatives(name: str) -> list[str]:
    """The other common spellings of a chromosome name."""
    if name in MITOCHONDRIAL:
        return [MITOCHONDRIAL[1 - MITOCHONDRIAL.index(name)], "chrMT" if name == "MT" else "M"]
    if name.startswith("chr"):
        return [name[3:]]
    return ["chr" + name]


class ChromMatcher:
    """Maps input chromosome names to reference contig names, remembering each decision."""

    def __init__(self, reference_names, aliases: dict[str, str] | None = None):
        self.reference_names = set(reference_names)
        self.aliases = aliases or {}
        self._matched: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        if name not in self._matched:
            self._matched[name] = self._match(name)
        return self._matched[name]

    def _match(self, name: str) -> str | None:
        if name in self.reference_names:
            return name
        for alternative in conventional_alternatives(name):
            if alternative in self.reference_names:
                log(f"janus: note: chromosome {name} matched to reference contig {alternative}")
                return alternative
        alias = self.aliases.get(name)
        if alias is not None and alias in self.reference_names:
            return alias
        return None
