"""janus generate and conditional fine-tuning: beam search against brute force, greedy, sampling
(seeds, top-k, frequencies against the model's probabilities), one cached step per token, prompt
tokens (new rows random, old rows unchanged, save/load), the conditional loss, the CLI's outputs
and errors, and a tiny fine-tune-then-generate run."""

import functools
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import dnalm
from dnalm import generation, prompts
from dnalm.tokenizer import BASE_IDS
from hybridna import BOS, HybriDNA, HybriDNAConfig
from janus_cli.commands import finetune as ft
from janus_cli.main import app

# two layers, the second attention, so both cache kinds (Mamba2 state, KV) are exercised
SMALL = HybriDNAConfig(d_model=32, n_layers=2, attn_period=2, attn_offset=1, n_heads=2, n_kv_heads=1, d_state=8,
                       headdim=16, max_seq_len=64, name="small")
EMPTY = torch.empty(0, dtype=torch.long)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def peaked_model(seed=0, labels=("0", "1"), scale=40.0) -> HybriDNA:
    """A small random HybriDNA with prompt tokens for labels, its LM head scaled up so that its
    base distributions are far from uniform (a wrong sampler or scorer then shows)."""
    torch.manual_seed(seed)
    model = HybriDNA(SMALL)
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    if labels:
        prompts.add_label_prompts(model, labels, torch.Generator().manual_seed(seed))
    return model.eval()


def full_pass_scores(model, prompt_ids, ids) -> torch.Tensor:
    """Per-sequence sum of ACGT-renormalised log-probs from one uncached pass (the brute force)."""
    with torch.no_grad():
        logits = model.prompted_logits(prompt_ids.reshape(1, -1).expand(len(ids), -1), ids)
    log_probs = torch.log_softmax(logits[..., list(BASE_IDS)].double(), dim=-1)
    return log_probs.gather(-1, (ids - BASE_IDS[0])[..., None])[..., 0].sum(-1)


def all_sequences(length) -> torch.Tensor:
    return torch.tensor(list(itertools.product(BASE_IDS, repeat=length)), dtype=torch.long)


def label_prompt(model, label, bases=""):
    return torch.cat([prompts.label_prompt_ids(model, label), dnalm.encode(bases) if bases else EMPTY])


# --- beam search --------------------------------------------------------------------------------


@pytest.mark.parametrize("label, bases", [(None, ""), ("1", "ACG")])
def test_beam_search_returns_every_sequence_in_order_with_full_forward_scores(label, bases):
    model = peaked_model()
    prompt = label_prompt(model, label, bases) if label else EMPTY
    found = generation.beam_search(model, prompt, 3, 64)
    assert len(found) == 64 and found.ids.shape == (64, 3)
    assert len({tuple(row) for row in found.ids.tolist()}) == 64  # every one of the 4^3 sequences
    assert torch.all(found.log_likelihood[:-1] >= found.log_likelihood[1:])  # best first
    assert found.log_likelihood.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    brute = full_pass_scores(model, prompt, found.ids)
    torch.testing.assert_close(found.log_likelihood, brute, rtol=0, atol=1e-5)
    everything = full_pass_scores(model, prompt, all_sequences(3))
    torch.testing.assert_close(found.log_likelihood, everything.sort(descending=True).values, rtol=0, atol=1e-5)
    assert found.log_likelihood.max() - found.log_likelihood.min() > 3  # the model is far from uniform
    if label is None:  # with no prompt the scores are the plain forward's
        plain = model.base_log_probs(found.ids).double().gather(-1, (found.ids - BASE_IDS[0])[..., None]).sum((1, 2))
        torch.testing.assert_close(found.log_likelihood, plain, rtol=0, atol=1e-5)


def test_beam_search_keeps_only_the_best_b():
    model = peaked_model()
    prompt = label_prompt(model, "0")
    found = generation.beam_search(model, prompt, 3, 5)
    everything = full_pass_scores(model, prompt, all_sequences(3))
    # beam search is not exhaustive, so its 5 need not be the global top 5, but its best is at most
    # the best (up to the float32 rounding between cached and full passes, as below)
    assert len(found) == 5 and found.log_likelihood[0] <= everything.max() + 1e-5
    torch.testing.assert_close(found.log_likelihood, full_pass_scores(model, prompt, found.ids), rtol=0, atol=1e-5)


def greedy_by_full_passes(model, prompt, length) -> tuple[torch.Tensor, float]:
    """Greedy decoding written out with one uncached pass per base."""
    ids, total = torch.empty(1, 0, dtype=torch.long), 0.0
    for _ in range(length):
        probe = torch.cat([ids, torch.full((1, 1), BASE_IDS[0])], dim=1)  # the last base is a placeholder
        with torch.no_grad():
            logits = model.prompted_logits(prompt.reshape(1, -1), probe)[0, -1]
        log_probs = torch.log_softmax(logits[list(BASE_IDS)].double(), dim=-1)
        best = int(log_probs.argmax())
        total += float(log_probs[best])
        ids = torch.cat([ids, torch.tensor([[BASE_IDS[best]]])], dim=1)
    return ids[0], total


def test_beam_width_one_is_greedy_decoding():
    model = peaked_model()
    prompt = label_prompt(model, "1", "TT")
    expected, total = greedy_by_full_passes(model, prompt, 20)
    found = generation.beam_search(model, prompt, 20, 1)
    assert found.ids[0].tolist() == expected.tolist()
    assert found.log_likelihood[0].item() == pytest.approx(total, abs=1e-5)
    assert generation.greedy(model, prompt, 20).ids[0].tolist() == expected.tolist()


def test_one_cached_step_per_token(monkeypatch):
    model = peaked_model()
    calls = {"prefill": 0, "step": 0}
    prefill, step = model.prefill, model.step

    def counting_prefill(tokens, cache):
        calls["prefill"] += 1
        return prefill(tokens, cache)

    def counting_step(token_ids, cache):
        calls["step"] += 1
        return step(token_ids, cache)

    def no_forward(*args):
        raise AssertionError("generation ran an uncached forward pass")

    monkeypatch.setattr(model, "prefill", counting_prefill)
    monkeypatch.setattr(model, "step", counting_step)
    monkeypatch.setattr(model, "forward", no_forward)
    generation.beam_search(model, label_prompt(model, "0"), 9, 8)
    assert calls == {"prefill": 1, "step": 8}
    calls.update(prefill=0, step=0)
    generation.sample(model, label_prompt(model, "0"), 9, 6, generator=torch.Generator().manual_seed(0))
    assert calls == {"prefill": 1, "step": 8}


# --- sampling -----------------------------------------------------------------------------------


def test_sampling_same_seed_same_sequences_and_top_k_1_is_greedy():
    model = peaked_model()
    prompt = label_prompt(model, "0", "GA")

    def draw(seed, **kwargs):
        return generation.sample(model, prompt, 15, 6, generator=torch.Generator().manual_seed(seed), **kwargs)

    first, again, other = draw(7), draw(7), draw(8)
    assert first.sequences() == again.sequences() and torch.equal(first.log_likelihood, again.log_likelihood)
    assert first.sequences() != other.sequences()
    torch.testing.assert_close(first.log_likelihood, full_pass_scores(model, prompt, first.ids), rtol=0, atol=1e-5)
    greedy, _ = greedy_by_full_passes(model, prompt, 15)
    for kwargs in ({"top_k": 1}, {"top_p": 1e-9}, {"temperature": 1e-3}):
        assert draw(3, **kwargs).ids.tolist() == [greedy.tolist()] * 6, kwargs


def test_sampling_filters_on_a_known_distribution():
    log_p = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    check = lambda expected, **kw: torch.testing.assert_close(  # noqa: E731
        generation.sampling_log_probs(log_p, **kw).exp(), torch.tensor(expected))
    check([0.5, 0.3, 0.15, 0.05])
    check([0.5 / 0.8, 0.3 / 0.8, 0, 0], top_k=2)
    check([0.5 / 0.8, 0.3 / 0.8, 0, 0], top_p=0.7)  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    check([1.0, 0, 0, 0], top_p=0.45)
    check([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], top_p=0.9)
    sqrt = torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt()
    check((sqrt / sqrt.sum()).tolist(), temperature=2.0)
    with pytest.raises(ValueError):
        generation.sampling_log_probs(log_p, temperature=0)


def tempered_sequence_probs(model, prompt, length, **filters) -> torch.Tensor:
    """P(sequence) under the sampler's per-base distributions, for every sequence, by brute force."""
    ids = all_sequences(length)
    with torch.no_grad():
        logits = model.prompted_logits(prompt.reshape(1, -1).expand(len(ids), -1), ids)
    draw = generation.sampling_log_probs(torch.log_softmax(logits[..., list(BASE_IDS)].double(), -1), **filters)
    return draw.gather(-1, (ids - BASE_IDS[0])[..., None])[..., 0].sum(-1).exp()


@pytest.mark.parametrize("filters", [{}, {"temperature": 2.0, "top_k": 3}])
def test_sample_frequencies_match_the_model_probabilities(filters):
    model = peaked_model(scale=8.0)  # every sequence likely enough to be counted (>= 25 of 4000 expected)
    prompt = label_prompt(model, "1")
    n, length = 4000, 2
    found = generation.sample(model, prompt, length, n, generator=torch.Generator().manual_seed(11),
                              batch_size=1000, **filters)
    expected = tempered_sequence_probs(model, prompt, length, **filters)
    assert expected.sum().item() == pytest.approx(1.0, abs=1e-9)
    index = {tuple(row): i for i, row in enumerate(all_sequences(length).tolist())}
    counts = np.bincount([index[tuple(row)] for row in found.ids.tolist()], minlength=4 ** length)
    assert counts[expected.numpy() == 0].sum() == 0  # nothing top-k removed is ever drawn
    support = expected.numpy() > 0
    expected_counts = n * expected.numpy()[support]
    chi2 = float(((counts[support] - expected_counts) ** 2 / expected_counts).sum())
    # the 0.999 quantile of chi-square with (cells - 1) degrees of freedom (Wilson-Hilferty)
    dof = int(support.sum()) - 1
    z = 3.0902
    critical = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < critical, (chi2, critical)
    uniform = np.full(support.sum(), n / support.sum())
    assert float(((counts[support] - uniform) ** 2 / uniform).sum()) > 10 * critical  # the test has power
    # each sample's log_likelihood is the model's own (untempered), whatever the sampler drew from
    torch.testing.assert_close(found.log_likelihood, full_pass_scores(model, prompt, found.ids), rtol=0, atol=1e-5)


# --- prompt tokens and the conditional objective ------------------------------------------------


def test_prompt_tokens_are_new_random_rows_and_the_old_rows_stay(tmp_path):
    torch.manual_seed(0)
    model = HybriDNA(SMALL).eval()
    old = model.embed.weight.detach().clone()
    ids = torch.tensor([dnalm.encode("ACGTTGCAAC").tolist()])
    before = model(ids)
    added = prompts.add_label_prompts(model, ["300", "031", "120", "300"], torch.Generator().manual_seed(1))
    assert sorted(added) == ["1:0", "1:1", "1:3", "2:0", "2:2", "2:3", "3:0", "3:1"]
    assert model.prompt_tokens == tuple(added) and model.config.extra[prompts.LABELS_KEY] == ["031", "120", "300"]
    weight = model.embed.weight.detach()
    assert weight.shape == (16 + 8, SMALL.d_model) and model.lm_head.weight.shape[0] == 16
    assert torch.equal(weight[:16], old)
    new = weight[16:]
    assert 0.01 < new.std().item() < 0.04 and abs(new.mean().item()) < 0.01  # N(0, 0.02)
    assert torch.linalg.matrix_rank(new) == 8  # every new row its own random vector
    torch.testing.assert_close(model(ids), before, rtol=0, atol=0)  # the bases' model is unchanged
    other = HybriDNA(SMALL)
    prompts.add_label_prompts(other, ["300", "031", "120"], torch.Generator().manual_seed(2))
    assert not torch.allclose(other.embed.weight[16:], new)  # random, from the generator

    # a later label adds only its missing tokens; every row so far stays
    assert prompts.add_label_prompts(model, ["320"], torch.Generator().manual_seed(3)) == []
    assert prompts.add_label_prompts(model, ["400"], torch.Generator().manual_seed(3)) == ["1:4"]
    assert torch.equal(model.embed.weight.detach()[:24], weight)
    with pytest.raises(prompts.LabelError, match="3"):
        prompts.add_label_prompts(model, ["11"])
    with pytest.raises(prompts.LabelError, match="same number of characters"):
        prompts.check_labels(["0", "10"])

    # save/load rebuild the larger embedding from config.json
    dnalm.save(model, tmp_path / "m")
    loaded = dnalm.load(tmp_path / "m")
    assert loaded.prompt_tokens == model.prompt_tokens
    assert torch.equal(loaded.embed.weight, model.embed.weight)
    assert prompts.known_labels(loaded) == ["031", "120", "300", "320", "400"]
    # labels map to their tokens; a new combination of known tokens works, an unknown character does not
    assert prompts.label_prompt_ids(loaded, "300").tolist() == [16 + model.prompt_tokens.index(n)
                                                                for n in ("1:3", "2:0", "3:0")]
    assert len(prompts.label_prompt_ids(loaded, "121")) == 3
    with pytest.raises(prompts.LabelError, match="031, 120, 300"):
        prompts.label_prompt_ids(loaded, "500")
    with pytest.raises(prompts.LabelError):
        prompts.label_prompt_ids(loaded, "30")


def test_conditional_loss_covers_the_bases_only():
    model = peaked_model(labels=("00", "01", "10"))
    model.train()
    ids = torch.stack([dnalm.encode("ACGTNACGGT"), dnalm.encode("TTGCAACGTA")])  # one N: not a target
    prompt_ids = torch.stack([prompts.label_prompt_ids(model, "01"), prompts.label_prompt_ids(model, "10")])
    loss = prompts.conditional_loss(model, prompt_ids, ids)
    # the same through the cache: [BOS] + prompt + bases, then only the predictions of the bases
    with torch.no_grad():
        cache = model.allocate_cache(2)
        logits = model.prefill(torch.cat([torch.full((2, 1), BOS), prompt_ids, ids[:, :-1]], dim=1), cache)
    base_logits = logits[:, prompt_ids.shape[1]:]  # position k predicts base 0
    log_probs = torch.log_softmax(base_logits, dim=-1).gather(-1, ids[..., None])[..., 0]
    counted = ids != dnalm.tokenizer.N
    assert counted.sum() == 19
    assert loss.item() == pytest.approx(-(log_probs[counted]).mean().item(), abs=1e-5)
    # the prompt conditions the prediction: its embedding rows get gradient
    loss.backward()
    assert model.embed.weight.grad[model.prompt_token_ids(["1:0", "2:1", "1:1", "2:0"])].abs().sum() > 0
    total, correct, n = prompts.next_base_counts(model, prompt_ids, ids)
    assert n == 19 and total == pytest.approx(loss.item() * 19, rel=1e-5)
    predicted = torch.tensor(BASE_IDS)[base_logits[..., list(BASE_IDS)].argmax(-1)]
    assert correct == int(((predicted == ids) & counted).sum())


# --- the CLI ------------------------------------------------------------------------------------


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    return dnalm.save(peaked_model(), tmp_path_factory.mktemp("generator") / "model")


def test_generate_parquet_and_fasta(generator_dir, tmp_path):
    code, _, err = run("generate", "--model", generator_dir, "--label", "0", "--label", "1", "--length", 6,
                       "--beam", 8, "-n", 3, "--threads", 1, "-o", tmp_path / "beam.parquet")
    assert code == 0, err
    table = pq.read_table(tmp_path / "beam.parquet")
    frame = table.to_pandas()
    assert list(frame.columns) == ["id", "label", "sequence", "log_likelihood", "rank"]
    assert frame["label"].tolist() == ["0"] * 3 + ["1"] * 3 and frame["rank"].tolist() == [1, 2, 3] * 2
    assert frame["id"].is_unique and frame["sequence"].str.fullmatch("[ACGT]{6}").all()
    model = dnalm.load(generator_dir)
    for label, group in frame.groupby("label"):
        expected = generation.beam_search(model, label_prompt(model, label), 6, 8)
        assert group["sequence"].tolist() == expected.sequences()[:3]
        np.testing.assert_allclose(group["log_likelihood"], expected.log_likelihood[:3].numpy())
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["model_arch"] == "hybridna" and meta["decoding"] == "beam" and meta["beam_width"] == "8"

    code, _, err = run("generate", "--model", generator_dir, "--label", "1", "--prompt", "acg", "--length", 5,
                       "--sample", "-n", 4, "--seed", 3, "--threads", 1, "-o", tmp_path / "sampled.fa")
    assert code == 0, err
    lines = (tmp_path / "sampled.fa").read_text().splitlines()
    assert len(lines) == 8
    headers = [dict(field.split("=") for field in line.split()[1:]) for line in lines[::2]]
    assert [line.split()[0] for line in lines[::2]] == [f">label_1_{r}" for r in (1, 2, 3, 4)]
    assert [h["rank"] for h in headers] == ["1", "2", "3", "4"] and {h["prompt"] for h in headers} == {"ACG"}
    scores = [float(h["log_likelihood"]) for h in headers]
    assert scores == sorted(scores, reverse=True)
    prompt = label_prompt(model, "1", "ACG")
    ids = torch.stack([dnalm.encode(seq) for seq in lines[1::2]])
    np.testing.assert_allclose(scores, full_pass_scores(model, prompt, ids).numpy(), rtol=1e-5)
    # the same seed on stdout (FASTA) gives the same sequences
    code, out, _ = run("generate", "--model", generator_dir, "--label", "1", "--prompt", "ACG", "--length", 5,
                       "--sample", "-n", 4, "--seed", 3, "--threads", 1)
    assert code == 0 and out.splitlines()[1::2] == lines[1::2]


def test_generate_errors(generator_dir, tiny_model_dir, tmp_path):
    code, _, err = run("generate", "--model", generator_dir, "--label", "7", "--length", 5, "--beam", 2)
    assert code == 2 and "unknown label '7'" in err and "labels 0, 1" in err
    code, _, err = run("generate", "--model", tiny_model_dir, "--length", 5, "--beam", 2)
    assert code == 2 and "janusdna" in err and "janus generate" in err
    code, _, err = run("generate", "--model", generator_dir, "--length", 5)
    assert code == 2 and "--beam" in err
    code, _, err = run("generate", "--model", generator_dir, "--length", 5, "--sample")
    assert code == 2 and "-n" in err
    code, _, err = run("generate", "--model", generator_dir, "--length", 5, "--beam", 2, "-n", 3)
    assert code == 2 and "at most 2" in err
    code, _, err = run("generate", "--model", generator_dir, "--length", 5, "--beam", 2, "--top-k", 1)
    assert code == 2 and "--sample only" in err
    code, _, err = run("generate", "--model", generator_dir, "--length", 5, "--beam", 2, "--prompt", "ACNT")
    assert code == 2 and "--prompt" in err
    unconditional = dnalm.save(HybriDNA(SMALL), tmp_path / "plain")
    code, _, err = run("generate", "--model", unconditional, "--label", "1", "--length", 5, "--beam", 2)
    assert code == 2 and "no prompt tokens" in err


def test_finetune_generative_then_generate_each_labels_motif(tmp_path):
    """Two labels, each with its own motif: after a short conditional fine-tune, beam search
    given each label writes that label's motif. The labels have two characters (two prompt
    tokens each) and a leading zero the CSV reader must keep."""
    rng = np.random.default_rng(0)
    motifs = {"01": "AATTAATT", "10": "GCGCCGCG"}
    rows = [{"sequence": motif + "".join(rng.choice(list("ACGT"), 4)), "label": label}
            for label, motif in motifs.items() for _ in range(48)]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[::6]).to_csv(tmp_path / "val.csv", index=False)
    torch.manual_seed(0)
    start = dnalm.save(HybriDNA(SMALL), tmp_path / "start")
    code, _, err = run("finetune", tmp_path / "train.csv", "--generative", "--val", tmp_path / "val.csv",
                       "--model", start, "--epochs", 12, "--batch-size", 16, "--lr", 3e-3, "--patience", 12,
                       "--threads", 1, "-q", "-o", tmp_path / "gen")
    assert code == 0, err
    model = dnalm.load(tmp_path / "gen")
    assert model.prompt_tokens == ("1:0", "2:1", "1:1", "2:0") and prompts.known_labels(model) == ["01", "10"]
    metrics = pd.read_json(tmp_path / "gen" / "metrics.json", typ="series")
    assert metrics["task"] == "generative"
    accuracies = [epoch["val"]["next_base_accuracy"] for epoch in metrics["epochs"]]
    assert metrics["best_epoch"] == 1 + int(np.argmax(accuracies)) and max(accuracies) > 0.6
    for label, motif in motifs.items():
        code, out, err = run("generate", "--model", tmp_path / "gen", "--label", label, "--length", 8,
                             "--beam", 4, "-n", 1, "--threads", 1)
        assert code == 0, err
        assert out.splitlines()[1] == motif, (label, out)
    # the classification path refuses a non-causal model for --generative, naming it
    code, _, err = run("finetune", tmp_path / "train.csv", "--generative", "--model", "janusdna-d32", "--epochs", 1,
                       "--threads", 1, "-o", tmp_path / "nope")
    assert code == 2 and "janusdna" in err
    assert ft.FinetuneOptions(train=tmp_path, out=tmp_path, model="x").generative is False


def test_the_diversity_measure_is_the_mean_pairwise_levenshtein_distance():
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from generation_eval import mean_pairwise_edit_distance

    def levenshtein(a, b):  # the textbook recursion, memoised
        @functools.lru_cache(maxsize=None)
        def d(i, j):
            if min(i, j) == 0:
                return max(i, j)
            return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
        return d(len(a), len(b))

    rng = np.random.default_rng(1)
    sequences = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(7)] + ["ACGTACGTACGT", "CGTACGTACGTA"]
    pairs = list(itertools.combinations(sequences, 2))
    assert mean_pairwise_edit_distance(sequences) == pytest.approx(np.mean([levenshtein(a, b) for a, b in pairs]))
    assert levenshtein("ACGTACGTACGT", "CGTACGTACGTA") == 2  # a shift is one deletion and one insertion
