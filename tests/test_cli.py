"""The CLI layer: exit codes, stdout/stderr discipline."""

import subprocess
import sys

import torch

import janusdna
from janus_cli.engine import runtime
from conftest import ORACLE


def janus(*args):
    return subprocess.run(
        [sys.executable, "-m", "janus_cli", *map(str, args)], capture_output=True, text=True
    )


def test_version_is_bare():
    result = janus("--version")
    assert result.returncode == 0 and result.stdout == janusdna.__version__ + "\n"


def test_import_checkpoint_then_info(tmp_path):
    out = tmp_path / "imported"
    result = janus("import-checkpoint", ORACLE / "last.ckpt", ORACLE / "model_config.json", "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    info = dict(line.split("\t", 1) for line in janus("info", out).stdout.splitlines())
    assert info["parameters_total"] == "1798332" and info["parameters_activated"] == "422076"
    assert info["weights_sha256"] == janusdna.weights_sha256(out)
    assert info["config.mid_attention_layers"] == "(4,)"


def test_info_on_a_preset_reports_paper_size():
    info = dict(line.split("\t", 1) for line in janus("info", "janusdna-d144").stdout.splitlines())
    assert info["parameters_total"] == "35533376" and info["weights_sha256"] == "-"


def test_bad_inputs_exit_1_with_a_message_and_no_output(tmp_path):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    result = janus("import-checkpoint", bogus, ORACLE / "model_config.json", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("janus: error: ") and str(bogus) in result.stderr
    assert not (tmp_path / "out").exists()


def test_usage_error_exits_2():
    assert janus("info").returncode == 2


def test_emulated_bfloat16_on_cpu_is_noted_once_on_stderr(monkeypatch, capsys):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: False)
    runtime._note_emulated_bfloat16.cache_clear()
    for _ in range(3):
        with runtime.autocast_context(cpu, torch.bfloat16):
            assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    captured = capsys.readouterr()
    assert captured.err.count("no native bfloat16") == 1 and captured.out == ""

    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: True)
    runtime._note_emulated_bfloat16.cache_clear()
    with runtime.autocast_context(cpu, torch.bfloat16), runtime.autocast_context(cpu, torch.float32):
        pass
    assert capsys.readouterr().err == ""
