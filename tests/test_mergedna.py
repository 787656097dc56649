"""MergeDNA: the merge algorithm's invariants (spec §7.2), fast kernels against their plain twins,
gradient routing of the three pre-training passes, parameter counts, and the dnalm plumbing."""

import json
import math

import pytest
import torch

import dnalm
from dnalm.interface import CapabilityError, IGNORE_INDEX, require
from dnalm.tokenizer import MASK, PAD
from mergedna import PRESETS, MergeDNA, MergeDNAConfig, merging
from mergedna.merging import TokenState, pool, source_matrix, unmerge
from mergedna.model import (
    GroupingEmbedding, amtm_loss, band_attention, band_attention_ref, full_attention, full_attention_ref,
    reconstruction_labels, use_reference_kernels,
)

SMALL = MergeDNAConfig(d_model=32, n_heads=2, ffn_dim=64, group_dim=16, latent_encoder_layers=2,
                       latent_decoder_layers=1, local_decoder_layers=1, max_seq_len=256, name="mergedna-test")


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is faster than two and immune to oversubscription on a
    shared machine (conftest sets two threads before every test; this runs after it)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return MergeDNA(SMALL).eval()


def random_ids(batch, length, seed=0):
    return torch.randint(7, 11, (batch, length), generator=torch.Generator().manual_seed(seed))


def check_segmentation(tokens: TokenState, ids, block=16):
    """Tokens of each row are contiguous, ordered, disjoint, cover every base, stay inside a block;
    PAD bases are singletons that are not real."""
    for b in range(ids.shape[0]):
        occupied = tokens.size[b] > 0
        start, size = tokens.start[b][occupied], tokens.size[b][occupied]
        n = ids.shape[1]
        assert int(occupied.sum()) == int(occupied[: int(occupied.sum())].sum())  # empty slots only at the end
        assert start[0] == 0 and torch.equal(start[1:], start[:-1] + size[:-1]) and int(size.sum()) == n
        assert torch.equal(torch.bincount(tokens.token_map[b], minlength=len(size))[: len(size)], size)
        assert torch.equal(tokens.token_map[b], torch.repeat_interleave(torch.arange(len(size)), size))
        assert int(size.max()) <= block
        origin = int(tokens.origin[b])
        assert torch.equal((start - origin).div(block, rounding_mode="floor"),
                           (start + size - 1 - origin).div(block, rounding_mode="floor"))
        base_real = tokens.real[b].gather(0, tokens.token_map[b])
        assert torch.equal(base_real, ids[b] != PAD)
        assert (size[~tokens.real[b][occupied]] == 1).all()  # PAD tokens never merged


# --- attention kernels ------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 3, 8])
def test_band_attention_matches_dense_reference(window):
    q, k, v = torch.randn(3, 2, 3, 37, 8).unbind(0)
    key_ok = torch.rand(2, 37) > 0.3
    bias = torch.rand(2, 37)
    for key_bias in (None, bias):
        fast = band_attention(q, k, v, key_ok, window, key_bias)
        torch.testing.assert_close(fast, band_attention_ref(q, k, v, key_ok, window, key_bias))
    torch.testing.assert_close(full_attention(q, k, v, key_ok, bias), full_attention_ref(q, k, v, key_ok, bias))


def test_band_attention_sees_only_its_window_and_the_allowed_keys():
    q, k, v = torch.randn(3, 1, 2, 40, 8).unbind(0)
    key_ok = torch.ones(1, 40, dtype=torch.bool)
    base = band_attention(q, k, v, key_ok, 8)
    far_k, far_v = k.clone(), v.clone()
    far_k[:, :, 29], far_v[:, :, 29] = 5.0, 5.0  # |20 - 29| = 9 > 8
    assert torch.equal(band_attention(q, far_k, far_v, key_ok, 8)[:, :, 20], base[:, :, 20])
    assert not torch.allclose(band_attention(q, far_k, far_v, key_ok, 8)[:, :, 21], base[:, :, 21])
    hidden = key_ok.clone()
    hidden[0, 29] = False
    assert torch.equal(band_attention(q, far_k, far_v, hidden, 8)[:, :, 21],
                       band_attention(q, k, v, hidden, 8)[:, :, 21])
    assert torch.isfinite(band_attention(q, k, v, torch.zeros_like(key_ok), 8)).all()  # PAD sees itself


# --- the merge step ---------------------------------------------------------------------------------


def tokens_after_layers(ids, layers, seed):
    """A realistic mid-encoder state: some local merges already done, random features."""
    gen = torch.Generator().manual_seed(seed)
    tokens = TokenState.of_bases(ids != PAD)
    x = torch.randn(*ids.shape, 8, generator=gen)
    for layer in range(layers):
        g = torch.nn.functional.normalize(torch.randn(*x.shape[:2], 4, generator=gen), dim=-1)
        x, tokens, _, _ = merging.local_merge(x, g, tokens, tokens.n_real // 6, layer % 2, 16)
    return x, tokens


@pytest.mark.parametrize("layers,budget", [(0, 9), (1, 7), (2, 1000)])
def test_local_merge_equals_reference(layers, budget):
    ids = random_ids(3, 90, seed=layers)
    ids[1, 70:] = PAD
    ids[2, :5] = PAD  # left padding too
    ids[2, 60:] = PAD
    x, tokens = tokens_after_layers(ids, layers, seed=layers)
    grouping = GroupingEmbedding(MergeDNAConfig(d_model=8, n_heads=2, group_dim=4, ffn_dim=8))
    merges = torch.tensor([budget, budget // 2, budget])
    results = []
    for merge in (merging.local_merge, merging.local_merge_ref):
        grouping.zero_grad()
        xs = x.clone().requires_grad_()
        out, new, target, sel = merge(xs, grouping(xs), tokens, merges, layers % 2, 16)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        results.append((out.detach(), new, target, sel, grouping.proj.weight.grad.clone(), xs.grad))
    (x1, t1, a1, s1, gw1, gx1), (x2, t2, a2, s2, gw2, gx2) = results
    for field in ("start", "size", "real", "token_map"):
        assert torch.equal(getattr(t1, field), getattr(t2, field)), field
    assert torch.equal(a1, a2) and torch.equal(s1, s2)
    torch.testing.assert_close(x1, x2)
    torch.testing.assert_close(gw1, gw2)
    torch.testing.assert_close(gx1, gx2)
    assert gw1.abs().sum() > 0  # the straight-through gate reaches the grouping embedding
    check_segmentation(t1, ids)
    if budget < 1000:
        assert torch.equal(s1.sum(1), merges)


def test_merged_token_is_the_size_weighted_average_and_the_rest_pass_unchanged():
    tokens = TokenState(start=torch.tensor([[0, 2, 3, 6]]), size=torch.tensor([[2, 1, 3, 2]]),
                        real=torch.ones(1, 4, dtype=torch.bool), token_map=torch.tensor([[0, 0, 1, 2, 2, 2, 3, 3]]),
                        origin=torch.tensor([0]))
    x = torch.randn(1, 4, 5)
    g = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.1], [1, 0.1], [1, 0.5], [0, 1]]]), dim=-1)
    out, new, target, sel = merging.local_merge(x, g, tokens, torch.tensor([1]), 1, 16)
    # A tokens are 1 and 3; token 1 is most like token 0 (cos) and merges into it
    assert sel.tolist() == [[False, True, False, False]] and target.tolist() == [[0, 0, 1, 2]]
    torch.testing.assert_close(out[0, 0], (2 * x[0, 0] + 1 * x[0, 1]) / 3)
    assert torch.equal(out[0, 1:], x[0, 2:])
    assert new.start.tolist() == [[0, 3, 6]] and new.size.tolist() == [[3, 3, 2]]
    assert new.token_map.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2]]


def test_ties_go_to_the_lower_position_and_identical_bases_average_to_themselves():
    ids = torch.full((1, 32), 7)
    tokens = TokenState.of_bases(ids != PAD)
    v = torch.randn(6)
    x = v.expand(1, 32, 6).clone()
    g = torch.nn.functional.normalize(torch.ones(1, 32, 3), dim=-1)
    out, new, _, sel = merging.local_merge(x, g, tokens, torch.tensor([3]), 0, 16)
    # all scores tie: the three lowest A tokens (0, 2, 4) merge, each into its left neighbour if any
    assert sel[0].nonzero().flatten().tolist() == [0, 2, 4]
    assert new.size[0, :4].tolist() == [3, 2, 1, 1]  # token 1 absorbs 0 and 2, token 3 absorbs 4
    torch.testing.assert_close(out, v.expand_as(out))


def test_merge_schedule_and_target_length():
    n = torch.tensor([4096, 70, 1, 17])
    target = merging.target_length(n, 0.5, 16)
    assert target.tolist() == [2048, 35, 1, 9]
    assert merging.target_length(torch.tensor([64]), 0.01, 16).tolist() == [4]  # one token per block at least
    plan = merging.merge_schedule(n - target, 4)
    assert plan[:, 0].tolist() == [512, 512, 512, 512]
    assert plan[:, 1].tolist() == [8, 8, 8, 11] and torch.equal(plan.sum(0), n - target)


@pytest.mark.parametrize("length,ratio", [(70, 0.4), (256, 0.5), (256, 0.6), (200, 0.5)])
def test_local_encoder_segmentation_invariants(model, length, ratio):
    ids = random_ids(2, length, seed=length)
    if length == 200:
        ids[1, 150:] = PAD
    trace = []
    with torch.no_grad():
        z, tokens = model.local_encoder(ids, ratio, trace=trace)
    n_real = (ids != PAD).sum(1)
    plan = merging.merge_schedule(n_real - merging.target_length(n_real, ratio, 16), 4)
    expected = n_real.clone()
    previous = torch.eye(length).expand(2, length, length)
    previous_size = torch.ones(2, length, dtype=torch.long)
    for layer, (state, target, sel) in enumerate(trace):
        check_segmentation(state, ids)
        expected = expected - plan[layer]
        assert torch.equal(state.n_real, expected)  # exactly the scheduled number of merges
        for b in range(2):
            # only adjacent tokens merge: old tokens land in slots 0, 1, 2, ... in order, at most 3 a slot
            landed = target[b][previous_size[b] > 0]
            assert landed[0] == 0 and ((landed.diff() == 0) | (landed.diff() == 1)).all()
            assert int(torch.bincount(landed).max()) <= 3
            assert (sel[b].nonzero().flatten() % 2 == layer % 2).all()  # only A tokens are merged away
        # S(l) = A(l) S(l-1), and S S^T = diag(size)
        t = state.size.shape[1]
        s = source_matrix(state.token_map, t)
        assign = torch.nn.functional.one_hot(target.clamp(max=t), t + 1)[..., :-1].transpose(1, 2).float()
        torch.testing.assert_close(s, assign @ previous)
        assert torch.equal(s.sum(1), torch.ones(2, length)) and torch.equal(s.sum(2), state.size.float())
        torch.testing.assert_close(s @ s.transpose(1, 2), torch.diag_embed(state.size.float()))
        previous, previous_size = s, state.size
    assert torch.equal(tokens.n_real, merging.target_length(n_real, ratio, 16))
    assert z.shape[1] == tokens.size.shape[1]


def test_unmerge_and_pool():
    ids = random_ids(2, 64)
    _, tokens = tokens_after_layers(ids, 3, seed=5)
    t = tokens.size.shape[1]
    z = torch.randn(2, t, 4)
    torch.testing.assert_close(unmerge(z, tokens.token_map), source_matrix(tokens.token_map, t).transpose(1, 2) @ z)
    torch.testing.assert_close(pool(unmerge(z, tokens.token_map), tokens.token_map, t), z)
    u = unmerge(torch.randn(2, t, 4), tokens.token_map)  # constant within each token
    torch.testing.assert_close(unmerge(pool(u, tokens.token_map, t), tokens.token_map), u)
    x = torch.randn(2, 64, 4)  # not constant within tokens: the projection changes it
    assert not torch.allclose(unmerge(pool(x, tokens.token_map, t), tokens.token_map), x)


def test_padding_never_merges_with_real_bases(model):
    ids = random_ids(3, 96, seed=7)
    ids[0, 60:] = PAD
    ids[1, :10] = PAD
    ids[2, ::9] = PAD  # scattered PADs, an extreme case
    with torch.no_grad():
        _, tokens = model.local_encoder(ids, 0.5)
    check_segmentation(tokens, ids)
    n_real = (ids != PAD).sum(1)
    assert torch.equal(tokens.n_real[:2], merging.target_length(n_real, 0.5, 16)[:2])
    # PAD takes no part in attention either: the padded rows tokenise as they do alone
    for row, real in ((0, slice(0, 60)), (1, slice(10, 96))):
        with torch.no_grad():
            z_alone, alone = model.local_encoder(ids[row: row + 1, real], 0.5)
            z, tokens = model.local_encoder(ids[row: row + 1], 0.5)
        keep = tokens.real[0]
        assert torch.equal(tokens.start[0][keep] - real.start, alone.start[0]) and torch.equal(tokens.size[0][keep],
                                                                                              alone.size[0])
        torch.testing.assert_close(z[0][keep], z_alone[0], atol=1e-5, rtol=1e-5)


# --- latent merge and AMTM ----------------------------------------------------------------------------


def test_latent_merge_equals_reference_and_gives_exactly_k(model):
    ids = random_ids(3, 100, seed=2)
    ids[1, 80:] = PAD
    ids[2, 50:] = PAD
    with torch.no_grad():
        z, tokens = model.local_encoder(ids, 0.5)
        z_k, latent = model.latent_encoder.forward_merging(z, tokens, 0.5)
        with use_reference_kernels():
            z_ref, latent_ref = model.latent_encoder.forward_merging(z, tokens, 0.5)
    torch.testing.assert_close(z_k, z_ref)
    for field in ("size", "count", "real", "latent_map"):
        assert torch.equal(getattr(latent, field), getattr(latent_ref, field)), field
    torch.testing.assert_close(latent.pos, latent_ref.pos)
    l_real = tokens.n_real
    k = torch.floor(l_real.double() / 2 + 0.5).long()
    assert torch.equal(latent.real.sum(1), k)
    for b in range(3):
        real_local = tokens.real[b]
        groups = latent.latent_map[b][real_local]
        assert len(groups.unique()) == k[b]  # S' has K rows in use, one 1 per column
        assert latent.real[b][groups].all()
        assert int(latent.count[b][latent.real[b]].sum()) == int(l_real[b])  # g sums to L
        assert int(latent.size[b][latent.real[b]].sum()) == int((ids[b] != PAD).sum())
    # no latent merging outside pass 2: the Latent Encoder returns L tokens
    with torch.no_grad():
        assert model.latent_encoder(z, tokens).shape == z.shape


def test_amtm_probabilities_closed_form():
    latent_map = torch.tensor([[0, 1, 1, 2, 2, 2, 2, 3, 4]])  # groups of 1, 2, 4, 1 and a PAD token
    real = torch.tensor([[True] * 8 + [False]])
    p = merging.amtm_probabilities(latent_map, real, 2.0)
    expected = torch.tensor([1, 1 / 4, 1 / 4, 1 / 16, 1 / 16, 1 / 16, 1 / 16, 1, 0], dtype=torch.float64)
    torch.testing.assert_close(p[0], expected / expected.sum())
    assert math.isclose(float(p.sum()), 1.0)


def test_amtm_draws_exactly_k_distinct_tokens_favouring_small_groups():
    p = merging.amtm_probabilities(torch.tensor([[0, 1, 1, 2, 2, 2, 2, 3, 4]]),
                                   torch.tensor([[True] * 8 + [False]]), 2.0)
    gen = torch.Generator().manual_seed(0)
    draws = 10_000
    many = p.expand(draws, -1)
    masks = merging.sample_without_replacement(many, torch.full((draws,), 3), gen)
    assert (masks.sum(1) == 3).all() and not masks[:, 8].any()
    assert masks[:, 0].float().mean() > masks[:, 3].float().mean()  # singleton over a member of 4
    first = merging.sample_without_replacement(many, torch.ones(draws, dtype=torch.long), gen)
    torch.testing.assert_close(first.double().mean(0), p[0], atol=0.015, rtol=0)


def test_amtm_masks_whole_tokens(model):
    ids = random_ids(2, 128, seed=4)
    ids[1, 100:] = PAD
    with torch.no_grad():
        z, tokens = model.local_encoder(ids, 0.5)
        _, latent = model.latent_encoder.forward_merging(z, tokens, 0.5)
    masked, mask, k = model.amtm_inputs(ids, tokens, latent)
    assert torch.equal(k, latent.real.sum(1))
    assert torch.equal(masked == MASK, mask) and torch.equal(masked[~mask], ids[~mask])
    for b in range(2):
        token_mask = torch.zeros(tokens.size.shape[1], dtype=torch.bool)
        token_mask[tokens.token_map[b][mask[b]]] = True
        assert int(token_mask.sum()) == int(k[b]) and tokens.real[b][token_mask].all()
        assert torch.equal(mask[b], token_mask[tokens.token_map[b]])  # every base of a drawn token
        assert int(mask[b].sum()) == int(tokens.size[b][token_mask].sum())


def test_amtm_loss_counts_only_masked_bases():
    ids = random_ids(1, 20)
    labels = reconstruction_labels(ids)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 3:7] = True
    logits = torch.randn(1, 20, 16, requires_grad=True)
    amtm_loss(logits, labels, mask).backward()
    assert (logits.grad[0, ~mask[0]] == 0).all() and (logits.grad[0, mask[0]] != 0).any(-1).all()
    per_base = torch.nn.functional.cross_entropy(logits[0, 3:7], ids[0, 3:7], reduction="sum")
    torch.testing.assert_close(amtm_loss(logits, labels, mask, "tokens", torch.tensor([2])), per_base / 2)
    torch.testing.assert_close(amtm_loss(logits, labels, mask), per_base / 4)


def test_compression_ratio_sampling():
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([merging.sample_compression_ratio(generator=gen) for _ in range(10_000)])
    assert draws.min() >= 0.4 and draws.max() <= 0.6
    assert abs(float(draws.mean()) - 0.5) < 0.005 and 0.045 < float(draws.std()) < 0.055
    assert len(draws.unique()) > 1000


# --- the model ----------------------------------------------------------------------------------------


def test_pretraining_loss_and_its_gradient_routing():
    torch.manual_seed(0)
    model = MergeDNA(SMALL).train()
    ids = random_ids(2, 96, seed=1)
    total, parts = model.pretraining_loss(ids)
    assert set(parts) >= {"cross_entropy", "mtr", "latent_mtr", "amtm", "compression_ratio"}
    torch.testing.assert_close(total, parts["mtr"] + 0.25 * parts["latent_mtr"] + parts["amtm"])
    ratio = float(parts["compression_ratio"])
    assert 0.4 <= ratio <= 0.6
    expected_tokens = merging.target_length(torch.tensor([96]), ratio, 16).item() / 96
    assert math.isclose(float(parts["tokens_per_base"]), expected_tokens)

    def grads(module):
        return [p.grad for p in module.parameters()]

    parts["latent_mtr"].backward(retain_graph=True)  # pass 2 alone
    assert all(g is None or not g.any() for g in grads(model.local_encoder))
    for module in (model.latent_encoder, model.latent_decoder, model.local_decoder):
        assert any(g is not None and g.any() for g in grads(module))
    model.zero_grad()
    parts["mtr"].backward(retain_graph=True)
    blocks = model.local_encoder.blocks
    assert all(p.grad is not None and p.grad.any() for p in blocks.parameters())
    assert all(p.proj.weight.grad.any() for p in model.local_encoder.grouping)  # straight-through
    model.zero_grad()
    parts["amtm"].backward()
    assert all(p.grad is not None and p.grad.any() for p in blocks.parameters())


def test_hard_merge_option_gives_the_same_forward_and_no_grouping_gradient():
    torch.manual_seed(0)
    ste = MergeDNA(SMALL)
    hard = MergeDNA(MergeDNAConfig(**{**SMALL.to_dict(), "merge_grad": "none"}))
    hard.load_state_dict(ste.state_dict())
    ids = random_ids(2, 64)
    logits = hard(ids)
    assert torch.equal(logits, ste(ids))  # the gate is exactly 1 in the forward pass
    logits.logsumexp(-1).sum().backward()
    assert all(g.proj.weight.grad is None or not g.proj.weight.grad.any() for g in hard.local_encoder.grouping)


def test_proportional_attention_and_bfloat16_autocast():
    torch.manual_seed(0)
    plain = MergeDNA(SMALL)
    proportional = MergeDNA(MergeDNAConfig(**{**SMALL.to_dict(), "proportional_attention": True}))
    proportional.load_state_dict(plain.state_dict())
    ids = random_ids(2, 64)
    with torch.no_grad():
        assert not torch.allclose(plain(ids), proportional(ids))  # log(size) reaches the logits
        with proportional.reference_kernels():
            reference = proportional(ids)
        torch.testing.assert_close(proportional(ids), reference, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = proportional.train().pretraining_loss(ids)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    features = plain.base_features(ids)
    assert features.shape == (2, 64, SMALL.d_model)
    assert not torch.allclose(features, plain.base_features(ids, latent_decoder=True))


def test_reference_kernels_give_the_same_model(model):
    ids = random_ids(2, 80, seed=9)
    ids[1, 70:] = PAD
    with torch.no_grad():
        fast, segmentation = model(ids), model.tokenize(ids)
        with MergeDNA.reference_kernels():
            slow, segmentation_ref = model(ids), model.tokenize(ids)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(segmentation, segmentation_ref))


def test_tokenize_and_batch_invariance(model):
    ids = random_ids(3, 120, seed=11)
    ids[1, 90:] = PAD
    alone = [model.tokenize(ids[i: i + 1, : (90 if i == 1 else 120)])[0] for i in range(3)]
    together = model.tokenize(ids)
    for (starts, sizes), (starts2, sizes2), n in zip(alone, together, (120, 90, 120)):
        assert torch.equal(starts, starts2) and torch.equal(sizes, sizes2)
        assert int(sizes.sum()) == n and starts[0] == 0 and torch.equal(starts[1:], (starts + sizes)[:-1])
        assert len(sizes) == round(n / 2)
    mates = random_ids(3, 120, seed=12)
    mates[0] = ids[1]
    assert all(torch.equal(a, b) for a, b in zip(model.tokenize(mates)[0], together[1]))
    model.batch_invariant()
    try:
        with torch.no_grad():
            batched = model.hidden_and_base_log_probs(ids)
            single = model.hidden_and_base_log_probs(ids[1:2, :90])
            embedding = model.sequence_embedding(ids)
        for out, one in zip(batched, single):
            assert torch.equal(out[1:2, :90], one) and not out[1, 90:].any()
        assert torch.equal(embedding[1:2], model.sequence_embedding(ids[1:2, :90]))
    finally:
        model.batch_invariant(False)


def test_sequence_embedding_is_the_mean_over_real_bases(model):
    ids = random_ids(2, 64)
    ids[1, 40:] = PAD
    with torch.no_grad():
        hidden = model.hidden_states(ids)
        embedding = model.sequence_embedding(ids)
    torch.testing.assert_close(embedding[0], hidden[0].mean(0))
    torch.testing.assert_close(embedding[1], hidden[1, :40].mean(0))
    assert embedding.shape == (2, SMALL.d_model)


def test_masked_prediction_never_sees_the_masked_base(model):
    ids = random_ids(1, 64)
    other = ids.clone()
    other[0, 30] = 7 if ids[0, 30] != 7 else 8
    masked, masked_other = ids.clone(), other.clone()
    masked[0, 30] = masked_other[0, 30] = MASK
    with torch.no_grad():
        a, b = model.masked_base_log_probs(masked), model.masked_base_log_probs(masked_other)
        reconstruction = model.masked_base_log_probs(ids)
        per_base = model.base_log_probs(ids)
    assert torch.equal(a, b) and a.shape == (1, 64, 4)
    assert not torch.equal(reconstruction, model.masked_base_log_probs(other))  # unmasked, it sees the base
    # base_log_probs: position t from the pass with t alone masked
    torch.testing.assert_close(per_base[0, 30], a[0, 30], rtol=0, atol=1e-6)
    masked_five = ids.clone()
    masked_five[0, 5] = MASK
    torch.testing.assert_close(per_base[0, 5], model.masked_base_log_probs(masked_five)[0, 5], rtol=0, atol=1e-6)
    assert "per_base_prediction" in model.capabilities() and model.prediction_context == dnalm.MASKED


def test_local_decoder_tells_apart_the_bases_of_one_token(model):
    ids = torch.full((1, 64), 7)  # a homopolymer: long tokens
    with torch.no_grad():
        z, tokens = model.encode(ids)
        logits = model.decode(z, tokens)
    longest = int(tokens.size[0].argmax())
    assert tokens.size[0, longest] > 2
    positions = (tokens.token_map[0] == longest).nonzero().flatten()
    assert not torch.allclose(logits[0, positions[0]], logits[0, positions[1]])


def test_homopolymer_runs_merge_into_longer_tokens_at_initialisation(model):
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(7, 11, (1, 256), generator=gen)
    ids[0, 96:160] = 9  # 64 G
    (starts, sizes), = model.tokenize(ids)
    inside = (starts >= 96) & (starts + sizes <= 160)
    assert sizes[inside].float().mean() > 1.5 * sizes[starts + sizes <= 96].float().mean()


def test_module_parameter_counts_of_the_paper_model():
    with torch.device("meta"):
        big = MergeDNA(PRESETS["mergedna-380m"])
    counts = big.module_parameter_counts()
    for name, paper in (("local_encoder", 51e6), ("latent_encoder", 253e6), ("latent_decoder", 51e6),
                        ("local_decoder", 25e6)):
        assert abs(counts[name] - paper) / paper < 0.02, (name, counts[name])
    assert sum(counts.values()) == big.num_parameters()
    assert abs(big.num_parameters() - 380e6) / 380e6 < 0.01


def test_save_load_round_trip_and_registry(tmp_path, model):
    path = dnalm.save(model, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    assert config["arch"] == "mergedna" and config["name"] == "mergedna-test"
    loaded = dnalm.load(path)
    assert isinstance(loaded, MergeDNA) and loaded.config == model.config
    ids = random_ids(2, 48)
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert dnalm.architecture("mergedna").presets is PRESETS
    assert isinstance(dnalm.from_preset("mergedna-tiny", seed=0), MergeDNA)
    assert MergeDNAConfig.from_dict(PRESETS["mergedna-380m"].to_dict()) == PRESETS["mergedna-380m"]
    with pytest.raises(ValueError):
        MergeDNAConfig(compression_ratio=0.7)
    assert MergeDNA.capabilities() == {"tokenization", "per_base_prediction"}


def test_validation_loss_counts_real_bases(model):
    ids = random_ids(2, 48)
    ids[0, :3] = 11  # N
    ids[1, 40:] = PAD
    total, counted = model.validation_loss(ids)
    assert int(counted) == 96 - 3 - 8 and torch.isfinite(total)
    assert (reconstruction_labels(ids)[ids == PAD] == IGNORE_INDEX).all()


@pytest.mark.slow
def test_losses_fall_on_synthetic_data():
    torch.manual_seed(0)
    model = MergeDNA(PRESETS["mergedna-tiny"]).train()
    optimizer = torch.optim.AdamW(model.optimizer_groups(1e-8), lr=1e-3, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(0)

    def batch():
        ids = torch.randint(7, 11, (8, 256), generator=gen)
        for row in ids:  # homopolymers and tandem repeats among i.i.d. bases
            start = int(torch.randint(0, 200, (1,), generator=gen))
            row[start: start + 40] = int(torch.randint(7, 11, (1,), generator=gen))
            row[(start + 100) % 200: (start + 100) % 200 + 40] = torch.tensor([7, 8, 8]).repeat(14)[:40]
        return ids

    history = []
    for step in range(150):
        total, parts = model.pretraining_loss(batch())
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in parts.items()})
    first = {k: sum(h[k] for h in history[:10]) / 10 for k in history[0]}
    last = {k: sum(h[k] for h in history[-10:]) / 10 for k in history[0]}
    for name in ("mtr", "latent_mtr", "amtm"):
        assert last[name] < 0.8 * first[name] and last[name] < math.log(4), (name, first[name], last[name])
