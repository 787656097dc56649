"""Properties of the network that hold for any weights."""

import pytest
import torch

import janusdna
from dnalm.layers import SwiGLU
from janusdna.model import JanusDNA, JanusDNAConfig, SparseMoE, load_balancing_loss, moe_reference

SMALL = JanusDNAConfig(d_model=16, n_layers=4, fusion_attn_dim=32, mid_attention_layers=(2,), n_heads=4)


def random_ids(batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 12, (batch, length), generator=g)


@pytest.mark.parametrize("cfg", [SMALL, JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, final_mlp=True)])
@pytest.mark.parametrize("length", [5, 8, 33])
def test_position_never_sees_its_own_token(cfg, length):
    model = JanusDNA(cfg).eval()
    ids = random_ids(1, length)
    with torch.inference_mode():
        base = model(ids)
        for t in range(length):
            changed = ids.clone()
            changed[0, t] = 7 + (int(ids[0, t]) - 7 + 1) % 4
            delta = (model(changed) - base).abs().amax(-1)[0]
            assert delta[t] <= 1e-5, f"logits at {t} changed when token {t} changed"
            others = torch.cat([delta[:t], delta[t + 1 :]])
            assert (others > 1e-6).all(), f"changing token {t} left some other position unchanged"


def test_paper_parameter_counts():
    paper = {  # Table 4: total / activated, millions
        "janusdna-d32-midattn": (1.798, 0.422),
        "janusdna-d72-midattn": (8.947, 1.980),
        "janusdna-d32": (1.804, 0.428),
        "janusdna-d72": (8.956, 1.989),
        "janusdna-d144": (35.533, 7.664),
    }
    for name, (total, active) in paper.items():
        model = janusdna.from_preset(name)
        assert model.num_parameters() / 1e6 == pytest.approx(total, rel=0.01), name
        assert model.num_activated_parameters() / 1e6 == pytest.approx(active, rel=0.01), name


def test_moe_grouped_dispatch_equals_per_token_loop():
    moe = SparseMoE(d=8, hidden=16, n_experts=16, top_k=2)
    x = torch.randn(3, 7, 8)
    fast, logits = moe(x)
    slow, logits_ref = moe_reference(moe, x)
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.equal(logits, logits_ref)


def test_moe_token_outputs_do_not_depend_on_batch_mates():
    """Alone, a 3-token sequence sends one or two rows to an expert; in a batch of 40 its tokens
    share tiles with others. Its outputs must be the same to the bit (a plain matmul over each
    expert's rows fails this: BLAS rounds a 1-row product differently from a 40-row one)."""
    moe = SparseMoE(d=16, hidden=64, n_experts=4, top_k=2)
    x = torch.randn(40, 3, 16)
    in_batch, _ = moe(x)
    alone, _ = moe(x[7:8])
    assert torch.equal(in_batch[7:8], alone)


def test_moe_top2_weights_are_not_renormalised():
    moe = SparseMoE(d=8, hidden=16, n_experts=16, top_k=2)
    weights, _, _ = moe.route(torch.randn(50, 8))
    assert (weights.sum(-1) < 1 - 1e-3).all()


def test_aux_loss_is_top_k_for_uniform_router():
    uniform = [torch.zeros(40, 16), torch.zeros(10, 16)]
    assert load_balancing_loss(uniform, n_experts=16, top_k=2).item() == pytest.approx(2.0, abs=1e-6)
    peaked = [torch.zeros(40, 16).index_fill_(1, torch.tensor([0, 1]), 10.0)]
    assert load_balancing_loss(peaked, n_experts=16, top_k=2).item() > 2 * 7.9


def test_aux_loss_sums_both_directions_with_coefficient():
    model = JanusDNA(SMALL)
    for module in model.modules():
        if isinstance(module, SparseMoE):
            torch.nn.init.zeros_(module.router.weight)
    _, aux = model.forward_with_aux(random_ids(2, 9))
    assert aux.item() == pytest.approx(SMALL.router_aux_loss_coef * (2.0 + 2.0), abs=1e-6)


def test_backward_stream_is_reversed_not_complemented():
    """The backward stream of a sequence, read with the backward weights, must equal the forward
    stream of the reversed (not reverse-complemented) sequence read with those same weights."""
    cfg = JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, n_experts=1)
    model = JanusDNA(cfg).eval()
    ids = random_ids(1, 12)
    mirrored = JanusDNA(cfg).eval()
    state = model.state_dict()
    swapped = {}
    for k, v in state.items():
        k2 = k.replace(".fwd.", ".TMP.").replace(".bwd.", ".fwd.").replace(".TMP.", ".bwd.")
        swapped[k2] = v
    mirrored.load_state_dict(swapped)
    with torch.inference_mode():
        f_a, b_a = _streams(model, ids)
        f_b, b_b = _streams(mirrored, ids.flip(1))
    assert torch.allclose(f_a, b_b, atol=1e-5) and torch.allclose(b_a, f_b, atol=1e-5)


def _streams(model, ids):
    x = model.embed(ids)
    f, b = x, x.flip(1)
    for layer in model.layers:
        f, b, _, _ = layer(f, b)
    return f, b


def test_optimizer_groups_exempt_biases_norms_embedding_and_ssm_constants():
    model = JanusDNA(JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, final_mlp=True))
    decay, no_decay = model.optimizer_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "embed.weight" in no_decay_names and "final_mlp.fc1.bias" in no_decay_names
    assert "layers.0.fwd.mixer.A_log" in no_decay_names and "norm_f.weight" in no_decay_names
    assert "layers.0.in_proj.weight" in decay_names and "lm_head.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_base_log_probs_are_normalised_over_acgt():
    model = JanusDNA(SMALL).eval()
    with torch.inference_mode():
        lp = model.base_log_probs(random_ids(2, 10))
    assert lp.shape == (2, 10, 4)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, 10), atol=1e-5)


@pytest.mark.parametrize("swiglu_rows", [None, 1000], ids=["default", "blocks-straddle-sequences"])
def test_batch_invariant_outputs_do_not_depend_on_batch_mates(monkeypatch, swiglu_rows):
    if swiglu_rows:
        monkeypatch.setattr(SwiGLU, "BLOCK_ROWS", swiglu_rows)
    model = janusdna.load(janusdna.DEFAULT_MODEL).eval().batch_invariant()
    ids = torch.randint(7, 11, (3, 1024), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        alone = model.hidden_states(ids[1:2])
        assert torch.equal(alone, model.hidden_states(ids)[1:2])
        assert torch.equal(alone, model.hidden_states(ids[:2])[1:2])
