// JANUS_SCOREVARIANTS: score VCF variants with the JanusDNA DNA foundation model
// (`janus score-variants`). Written in the style of an nf-core module.
//
// Software: there is NO published container image for janus yet (no BioContainers /
// Seqera Containers build), so this module declares only a conda environment
// (environment.yml, which installs the pip package). Use `-profile conda`/`mamba`, or
// run with janus already on PATH (e.g. an activated venv). A `container` directive will
// be added once an image is published; none is invented here.
//
// This module has not been run with Nextflow; see examples/nextflow/README.md.

process JANUS_SCOREVARIANTS {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"

    input:
    tuple val(meta), path(vcf)
    tuple val(meta2), path(fasta), path(fai), path(gzi)
    path(model)

    output:
    tuple val(meta), path("*.parquet"), emit: scores
    path "versions.yml"               , emit: versions
    tuple val("${task.process}"), val('janus'), eval('janus --version'), topic: versions, emit: versions_janus

    when:
    task.ext.when == null || task.ext.when

    script:
    def args      = task.ext.args ?: ''
    def prefix    = task.ext.prefix ?: "${meta.id}"
    def model_arg = model ? "--model ${model}" : ''
    if ("${vcf}" == "${prefix}.parquet") error "Input and output names are the same, set prefix in module configuration to disambiguate!"
    """
    janus score-variants \\
        $vcf \\
        --fasta $fasta \\
        -o ${prefix}.parquet \\
        $model_arg \\
        --threads $task.cpus \\
        $args

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        janus: \$(janus --version)
    END_VERSIONS
    """

    stub:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo "$args"
    touch ${prefix}.parquet

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        janus: \$(janus --version)
    END_VERSIONS
    """
}
