"""The edges: reading and writing files (FASTA, BED, VCF, tables), regions, windows, chromosome names."""
