"""README.md's set-up commands are what CI runs, so the docs cannot drift from .ci/run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = quick_start_commands()[:2]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    for step in install_and_test.split(" && "):
        assert step.strip() in ci_lines, f"{step!r} from README.md is not run by .ci/run"
    assert "janus " in install_and_run.split(" && ")[-1]


def tour_blocks():
    tour = (ROOT / "README.md").read_text().split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", tour, flags=re.S)


def test_the_readme_tour_runs_as_written(tmp_path):
    """Every command of the tour, in order, from a directory that looks like the repository root
    (examples/ linked in), with the installed janus; then its outputs are checked."""
    import gzip
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    blocks = tour_blocks()
    assert len(blocks) == 5
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = "set -euo pipefail\n" + "\n".join(blocks) + "\n"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("JANUS_FASTA", None)
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    for png in ("regions.pca.png", "platinum.scores.png", "ism.png", "logo.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pq.read_table(tmp_path / "regions.emb.parquet").num_rows == 127
    scores = pq.read_table(tmp_path / "platinum.scores.parquet").to_pandas()
    with gzip.open(ROOT / "examples/data/hg38_chr21/platinum_NA12878_chr21_22-23Mb.vcf.gz", "rt") as vcf:
        records = [line.split("\t") for line in vcf if not line.startswith("#")]
    in_region = [r for r in records if int(r[1]) <= 22_100_000 and int(r[1]) + len(r[3]) > 22_000_000]
    assert len(scores) == sum(len(r[4].split(",")) for r in in_region) > 50
    assert scores["delta_pll"].notna().mean() > 0.9
    head_lines = result.stdout.splitlines()
    assert head_lines[0].startswith("chrom\tpos\tid\tref\talt\talt_index\tllr") and len(head_lines) == 5
    assert pq.read_table(tmp_path / "ism.parquet").num_rows == 100
    predictions = pq.read_table(tmp_path / "regions.promoter.parquet").to_pandas()
    assert len(predictions) == 127 and predictions["prob_1"].between(0, 1).all()
    assert (tmp_path / "promoters" / "metrics.json").is_file()
