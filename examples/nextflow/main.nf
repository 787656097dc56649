#!/usr/bin/env nextflow
// Minimal example: score the bundled NA12878 chr21:22-23Mb variants with JANUS_SCOREVARIANTS.
// Not run with Nextflow as part of this repository's tests; see README.md.

include { JANUS_SCOREVARIANTS } from './modules/janus/scorevariants/main'

// Defaults point at the example data bundled in this repository (examples/data/hg38_chr21).
params.vcf    = "${projectDir}/../data/hg38_chr21/platinum_NA12878_chr21_22-23Mb.vcf.gz"
params.fasta  = "${projectDir}/../data/hg38_chr21/hg38_chr21_22-23Mb.fa.gz"
params.fai    = "${projectDir}/../data/hg38_chr21/hg38_chr21_22-23Mb.fa.gz.fai"
params.gzi    = "${projectDir}/../data/hg38_chr21/hg38_chr21_22-23Mb.fa.gz.gzi"  // set to null for a plain FASTA
params.model  = null       // a JanusDNA model directory; null = the model shipped with janus
params.outdir = 'results'

workflow {
    def vcf = file(params.vcf, checkIfExists: true)
    ch_vcf = channel.of([ [ id: vcf.name.replaceAll(/\.vcf(\.gz)?$/, '') ], vcf ])

    ch_fasta = channel.value([
        [ id: file(params.fasta).name ],
        file(params.fasta, checkIfExists: true),
        file(params.fai, checkIfExists: true),
        params.gzi ? file(params.gzi, checkIfExists: true) : [],
    ])

    def model = params.model ? file(params.model, checkIfExists: true) : []

    JANUS_SCOREVARIANTS(ch_vcf, ch_fasta, model)

    JANUS_SCOREVARIANTS.out.scores.view { meta, scores -> "${meta.id}\t${scores}" }
}
