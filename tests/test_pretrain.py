"""janus pretrain: schedule, sampling, exact resume, and DDP equivalence on real GRCh37 sequence."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

import dnalm
import janusdna
from conftest import DATA
from janus_cli.commands import pretrain as pt
from janus_cli.engine.schedule import lr_at
from janus_cli.io.fasta import Reference

FASTA = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"
TINY = {"d_model": 16, "n_layers": 2, "fusion_attn_dim": 32, "n_experts": 4, "max_seq_len": 64, "name": "tiny"}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def options(tmp_path, tiny_config, run="run", **overrides):
    base = dict(fasta=FASTA, run_dir=tmp_path / run, config=tiny_config, val_regions=["20:190,001-200,000"],
                batch_size=2, steps=20, save_every=10, eval_every=10, log_every=1, val_windows=4, quiet=True)
    return pt.PretrainOptions(**(base | overrides))


def test_lr_schedule_warms_up_then_decays_to_min():
    lrs = [lr_at(s, 100, 1e-3, 1e-4, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-6)
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 10
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))

def test_each_architecture_scales_its_papers_peak_lr_to_the_batch():
    janus, hybrid = dnalm.architecture("janusdna").model_class, dnalm.architecture("hybridna").model_class
    assert janus.pretraining_peak_lr(2**20) == pytest.approx(8e-3) and janus.pretraining_peak_lr(2**18) == pytest.approx(4e-3)
    assert hybrid.pretraining_peak_lr(2**19) == pytest.approx(1e-3) and hybrid.pretraining_peak_lr(2**17) == pytest.approx(5e-4)


def test_windows_are_deterministic_inside_train_intervals_and_skip_n(tmp_path, tiny_config):
    opts = options(tmp_path, tiny_config)
    ref = Reference(FASTA)
    train, val = pt.split_regions(opts, ref)
    assert train.values.tolist() == [["20", 0, 190_000]] and val.values.tolist() == [["20", 190_000, 200_000]]
    sampler = pt.WindowSampler(ref, train, 64, 0.1, rc_augment=False, seed=3, stream=0)
    a, b = sampler.batch(5, range(8)), sampler.batch(5, range(8))
    assert torch.equal(a, b) and not torch.equal(a, sampler.batch(6, range(8)))
    text = ref.fetch("20", 0, 190_000)
    for row in a:
        assert janusdna.decode(row) in text


def test_n_positions_are_excluded_from_the_loss():
    model = janusdna.JanusDNA(janusdna.JanusDNAConfig(**TINY))
    ids = torch.randint(7, 11, (2, 32))
    with_n = ids.clone()
    with_n[:, ::4] = 11
    _, parts = model.pretraining_loss(with_n)
    ce = parts["cross_entropy"]
    logits = model(with_n)
    keep = with_n != 11
    manual = torch.nn.functional.cross_entropy(logits[keep], with_n[keep])
    assert ce.item() == pytest.approx(manual.item(), rel=1e-6)


def test_resume_continues_exactly(tmp_path, tiny_config):
    straight = pt.pretrain(options(tmp_path, tiny_config, run="straight"))
    pt.pretrain(options(tmp_path, tiny_config, run="split", steps=20, save_every=10))
    # simulate an interruption after step 10: drop the final model and the step-20 checkpoint
    split = tmp_path / "split"
    for path in [split / "model", split / "checkpoints/step-000020"]:
        subprocess.run(["rm", "-rf", str(path)], check=True)
    resumed = pt.pretrain(options(tmp_path, tiny_config, run="split", resume=True))
    a, b = janusdna.load(straight).state_dict(), janusdna.load(resumed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = pd.read_parquet(split / "metrics.parquet")
    assert metrics["step"].tolist() == list(range(1, 21))
    assert {"train_loss", "val_loss", "val_perplexity", "lr", "aux_loss", "tokens_per_s", "tokens"} <= set(metrics)


def test_resume_refuses_changed_options(tmp_path, tiny_config):
    pt.pretrain(options(tmp_path, tiny_config, steps=2, save_every=2))
    with pytest.raises(pt.UsageError, match="batch_size"):
        pt.pretrain(options(tmp_path, tiny_config, steps=2, batch_size=3, resume=True))


def test_loss_goes_down_on_real_dna(tmp_path, tiny_config):
    pt.pretrain(options(tmp_path, tiny_config, steps=40, lr=3e-3, eval_every=40))
    metrics = pd.read_parquet(tmp_path / "run/metrics.parquet")
    assert metrics["train_loss"].iloc[-5:].mean() < metrics["train_loss"].iloc[:5].mean() - 0.5


TINY_HYBRIDNA = {"arch": "hybridna", "d_model": 16, "n_layers": 2, "attn_period": 2, "attn_offset": 1, "n_heads": 2,
                 "n_kv_heads": 1, "d_state": 8, "headdim": 8, "max_seq_len": 64, "name": "tiny-hybridna"}


def _torchrun(args, env, port):
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "janus_cli", "pretrain", *args], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize("config, parallel", [(TINY, "ddp"), pytest.param(TINY_HYBRIDNA, "fsdp", marks=pytest.mark.slow)],
                         ids=["janusdna-ddp", "hybridna-fsdp"])
def test_two_processes_train_the_same_model_as_one(tmp_path, config, parallel):
    """torchrun with 2 gloo processes x batch 2 (DDP, or FSDP sharding every weight) == 1 process x
    batch 2 x grad-accum 2; under FSDP a resumed run also ends where the uninterrupted one does."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    common = ["--fasta", FASTA, "--config", config_path, "--val-region", "20:190,001-200,000", "--batch-size", "2",
              "--steps", "6", "--save-every", "3", "--eval-every", "3", "--log-every", "1", "--val-windows", "5",
              "--threads", "1", "-q"]
    flags = ["--fsdp"] if parallel == "fsdp" else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "janus_cli", "pretrain", "-o", tmp_path / "one", "--grad-accum", "2",
                    *common], check=True, env=env)
    _torchrun(["-o", tmp_path / "two", *common, *flags], env, 29533)
    one = pd.read_parquet(tmp_path / "one/metrics.parquet")
    two = pd.read_parquet(tmp_path / "two/metrics.parquet")
    assert (one["tokens"] == two["tokens"]).all()
    assert (one["train_loss"] - two["train_loss"]).abs().max() < 1e-4
    assert (one["val_loss"] - two["val_loss"]).abs().max() < 1e-4
    a = dnalm.load(tmp_path / "one/model").state_dict()
    b = dnalm.load(tmp_path / "two/model").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    if parallel == "fsdp":
        assert json.loads((tmp_path / "two/run.json").read_text())["options"]["fsdp"] is True
        interrupted = tmp_path / "interrupted"
        shutil.copytree(tmp_path / "two", interrupted)
        shutil.rmtree(interrupted / "model")
        shutil.rmtree(interrupted / "checkpoints" / "step-000006")
        _torchrun(["-o", interrupted, *common, *flags, "--resume"], env, 29534)
        c = dnalm.load(interrupted / "model").state_dict()
        assert max((b[k] - c[k]).abs().max().item() for k in b) < 1e-6


TINY_MERGEDNA = {"arch": "mergedna", "d_model": 16, "n_heads": 2, "ffn_dim": 32, "local_encoder_layers": 2,
                 "latent_encoder_layers": 1, "latent_decoder_layers": 1, "local_decoder_layers": 1, "group_dim": 8,
                 "max_seq_len": 64, "name": "tiny-mergedna"}


@pytest.mark.parametrize("config, components", [
    (TINY_HYBRIDNA, set()),  # next-token prediction
    (TINY_MERGEDNA, {"mtr", "latent_mtr", "amtm"}),  # the three-pass objective, each loss logged
], ids=["hybridna", "mergedna"])
def test_each_architecture_pretrains_with_its_objective(tmp_path, config, components):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    final = pt.pretrain(options(tmp_path, config_path, steps=4, save_every=4, eval_every=4))
    model = dnalm.load(final)
    assert model.arch == config["arch"] and json.loads((final / "config.json").read_text())["arch"] == config["arch"]
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert "aux_loss" not in metrics.columns and metrics["train_loss"].notna().all()
    assert components <= set(metrics.columns) and metrics[sorted(components)].notna().all().all()
    assert metrics["val_loss"].dropna().iloc[-1] > 0


def test_init_from_continues_a_model_at_a_longer_context(tmp_path, tiny_hybridna_dir):
    """Context extension: --init-from's weights are where training starts, and a --seq-len longer
    than its max_seq_len (256) becomes the new model's."""
    final = pt.pretrain(options(tmp_path, None, init_from=tiny_hybridna_dir, seq_len=512, steps=1, lr=1e-12,
                                val_regions=[], save_every=1, eval_every=1))
    start, extended = dnalm.load(tiny_hybridna_dir), dnalm.load(final)
    assert extended.arch == "hybridna" and extended.max_seq_len == 512 and start.max_seq_len == 256
    for name, tensor in start.state_dict().items():
        torch.testing.assert_close(extended.state_dict()[name], tensor, rtol=0, atol=1e-5)  # one step at lr 1e-6
    assert json.loads((tmp_path / "run" / "run.json").read_text())["options"]["seq_len"] == 512
