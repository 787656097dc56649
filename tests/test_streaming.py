"""Sharding, merging, torchrun and resuming of the inference commands' outputs, end to end."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, HG38
from janus_cli.commands import score_variants as score_variants_module
from janus_cli.main import app
from janus_cli.engine.streaming import Progress, parse_shard
from janus_cli.errors import UsageError

PLATINUM = EXAMPLES / "platinum_NA12878_chr21_22-23Mb.vcf.gz"  # 1,604 ALT alleles: 4 chunks of 512
RUN_METADATA_EXCLUDED = {b"command_line", b"janus_shard", b"janus_chunks", b"janus_merged_from"}


def janus(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def score_args(model_dir, *extra):
    return ["score-variants", PLATINUM, "--fasta", HG38, "--model", model_dir, "--window", 16, "--scores", "llr",
            "--threads", 1, *extra]


def run_metadata(path):
    return {k: v for k, v in pq.read_schema(path).metadata.items() if k not in RUN_METADATA_EXCLUDED}


@pytest.fixture(scope="module", params=["janusdna", pytest.param("hybridna", marks=pytest.mark.slow)])
def streaming_model_dir(request, tiny_model_dir, tiny_hybridna_dir):
    """Each architecture's tiny model; HybriDNA's runs of these multi-process tests are slow checks."""
    return {"janusdna": tiny_model_dir, "hybridna": tiny_hybridna_dir}[request.param]


@pytest.fixture(scope="module")
def single_run(streaming_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "scores.parquet"
    assert janus(*score_args(streaming_model_dir, "-o", out)).exit_code == 0
    return out


def test_shards_merge_back_into_the_single_run(tmp_path, streaming_model_dir, single_run):
    shards = []
    for i in (1, 2, 3):
        shards.append(tmp_path / f"shard{i}.parquet")
        result = janus(*score_args(streaming_model_dir, "--shard", f"{i}/3", "-o", shards[-1]))
        assert result.exit_code == 0, result.output
    held = [[chunk for chunk, _ in json.loads(pq.read_schema(s).metadata[b"janus_chunks"])] for s in shards]
    assert held == [[0, 3], [1], [2]]
    merged = tmp_path / "merged.parquet"
    result = janus("merge", shards[2], shards[0], shards[1], "-o", merged)
    assert result.exit_code == 0, result.output
    assert pq.read_table(merged).equals(pq.read_table(single_run))
    assert run_metadata(merged) == run_metadata(single_run)


def test_merge_refuses_shards_of_different_runs_or_a_missing_shard(tmp_path, tiny_model_dir):
    first = tmp_path / "a1.parquet"
    second_other_window = tmp_path / "b2.parquet"
    assert janus(*score_args(tiny_model_dir, "--shard", "1/2", "-o", first)).exit_code == 0
    assert janus(*score_args(tiny_model_dir, "--shard", "2/2", "--window", 32, "-o", second_other_window)).exit_code == 0
    result = janus("merge", first, second_other_window, "-o", tmp_path / "m.parquet")
    assert result.exit_code == 1 and "not from the same run" in result.stderr and "window" in result.stderr
    result = janus("merge", first, "-o", tmp_path / "m.parquet")
    assert result.exit_code == 1 and "shard 2/2 is missing" in result.stderr
    assert not (tmp_path / "m.parquet").exists()


def test_shard_option_is_checked():
    assert parse_shard("2/8").index == 1 and parse_shard("2/8").count == 8
    for bad in ("0/4", "5/4", "1-4", "x"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_two_torchrun_processes_write_what_one_process_writes(tmp_path, streaming_model_dir, single_run):
    out = tmp_path / "scores.parquet"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547",
               "-m", "janus_cli", *map(str, score_args(streaming_model_dir, "-o", out))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out).equals(pq.read_table(single_run))
    assert run_metadata(out) == run_metadata(single_run)
    summaries = [line for line in result.stderr.splitlines() if line.startswith("janus: score-variants:")]
    assert summaries == [summaries[0]] and "1604 alleles" in summaries[0]  # one summary, of the whole run
    assert not (tmp_path / ".scores.parquet.partial").exists()


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, streaming_model_dir, monkeypatch):
    args = score_args(streaming_model_dir, "--window", 96, "--scores", "delta_pll")  # seconds per chunk
    out = tmp_path / "scores.parquet"
    partial = tmp_path / ".scores.parquet.partial"
    process = subprocess.Popen([sys.executable, "-m", "janus_cli", *map(str, args), "-o", str(out)],
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(partial.glob("chunk-*.parquet"))) < 1:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(p.name for p in partial.glob("chunk-*.parquet"))
    assert 1 <= len(finished) < 4 and not out.exists()

    computed = []
    real_score_chunk = score_variants_module.score_chunk
    monkeypatch.setattr(score_variants_module, "score_chunk",
                        lambda group, run: computed.append(1) or real_score_chunk(group, run))
    result = janus(*args, "-o", out, "--resume")
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    assert len(computed) == 4 - len(finished)  # only the unfinished chunks are computed again
    assert f"resuming {out}: {len(finished)} chunks already done" in result.stderr
    uninterrupted = tmp_path / "uninterrupted.parquet"
    assert janus(*args, "-o", uninterrupted).exit_code == 0
    assert pq.read_table(out).equals(pq.read_table(uninterrupted))
    assert not partial.exists()


def test_resume_refuses_other_options(tmp_path, tiny_model_dir):
    out = tmp_path / "scores.parquet"
    partial = tmp_path / ".scores.parquet.partial"
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps({"window": "8"}))
    result = janus(*score_args(tiny_model_dir, "-o", out, "--resume"))
    assert result.exit_code == 2 and "started with different settings" in result.stderr and partial.exists()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_records_rate_and_eta_on_a_terminal_only(monkeypatch):
    for stream, quiet, shown in ((_Terminal(), False, True), (_Terminal(), True, False), (io.StringIO(), False, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with Progress(10, quiet=quiet) as progress:
            time.sleep(0.05)
            progress.advance(4, 4000)
            progress.advance(6, 6000)
        text = stream.getvalue()
        assert ("10/10" in text and "bp/s" in text and "ETA" in text) == shown
        assert shown or text == ""
