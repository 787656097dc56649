"""Make grch37_chr20_1000G_windows.fa.gz: GRCh37 chromosome 20 (contig "20", full length, global
coordinates) with the real sequence only within 300 bp of each variant of
1000G_phase3_subset_chr20.vcf.gz and N elsewhere, so the 1000 Genomes VCF can be scored in tests
without the 18 MB chromosome. Run from the repository root:

    python tests/data/make_grch37_1000G_windows.py ../shared/data/grch37_chr20/GRCh37_chr20.fa.gz
"""

import sys
from pathlib import Path

import pysam

FLANK = 300
HERE = Path(__file__).parent


def main(source: str):
    with pysam.FastaFile(source) as fasta:
        length = fasta.get_reference_length("20")
        sequence = bytearray(b"N" * length)
        with pysam.VariantFile(str(HERE / "1000G_phase3_subset_chr20.vcf.gz")) as vcf:
            for record in vcf:
                start, end = max(record.start - FLANK, 0), min(record.stop + FLANK, length)
                sequence[start:end] = fasta.fetch("20", start, end).encode()
    plain = HERE / "grch37_chr20_1000G_windows.fa"
    with open(plain, "w") as out:
        out.write(">20\n")
        for i in range(0, length, 60):
            out.write(sequence[i:i + 60].decode() + "\n")
    pysam.tabix_compress(str(plain), str(plain) + ".gz", force=True)
    plain.unlink()
    pysam.faidx(str(plain) + ".gz")


if __name__ == "__main__":
    main(sys.argv[1])
