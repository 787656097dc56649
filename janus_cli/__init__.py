"""janus: the command-line tool around the JanusDNA model."""
