"""HybriDNA: the SSD kernel against its sequential twin and the Mamba1 scan, the Mamba2 mixer against
mamba-ssm's layout and a plain re-implementation, the layer stack, the inference cache, echo
embeddings, the losses, parameter counts and the native checkpoint."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import dnalm
from dnalm.interface import LEFT
from dnalm.layers import causal_attention_ref
from dnalm.tokenizer import BASE_IDS, N
from hybridna import BOS, PRESETS, HybriDNA, HybriDNAConfig
from hybridna.model import GatedRMSNorm, Mamba2
from hybridna.ssd import KERNELS, ssd, ssd_chunked, ssd_ref, ssd_step
from janusdna.scan import selective_scan_ref

TINY = HybriDNAConfig(d_model=32, n_layers=6, attn_period=4, attn_offset=2, n_heads=4, n_kv_heads=2, d_state=8,
                      headdim=8, ngroups=2, chunk_size=8, name="hybridna-test")


def ssd_inputs(batch, length, heads, headdim, groups, d_state, dtype=torch.float64, seed=0):
    """SSD inputs with Mamba2-like magnitudes, in ssd's argument order."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, headdim, generator=g, dtype=dtype)
    dt = F.softplus(torch.randn(batch, length, heads, generator=g, dtype=dtype) - 1.5)
    A = -torch.empty(heads, dtype=dtype).uniform_(1, 16, generator=g)
    B = torch.randn(batch, length, groups, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, length, groups, d_state, generator=g, dtype=dtype)
    D = torch.randn(heads, generator=g, dtype=dtype)
    return [x, dt, A, B, C, D]


def tiny_model(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return HybriDNA(cfg).eval()


def random_ids(batch, length, seed=0):
    return torch.randint(BASE_IDS[0], BASE_IDS[-1] + 1, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- the SSD kernel -----------------------------------------------------------------------------


@pytest.mark.parametrize("length, chunk, groups", [(1, 8, 1), (7, 8, 1), (37, 8, 2), (64, 16, 1), (50, 8, 3),
                                                   (23, 4, 6)])
def test_chunked_ssd_matches_sequential(length, chunk, groups):
    x, dt, A, B, C, D = ssd_inputs(2, length, heads=6, headdim=4, groups=groups, d_state=5)
    initial = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    for init in (None, initial):
        y, state = ssd_chunked(x, dt, A, B, C, D, chunk_size=chunk, initial_state=init, return_final_state=True)
        y_ref, state_ref = ssd_ref(x, dt, A, B, C, D, initial_state=init, return_final_state=True)
        assert y.shape == x.shape and state.shape == (2, 6, 4, 5)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state, state_ref, rtol=1e-10, atol=1e-10)


def test_chunked_ssd_float32_and_dispatcher():
    args = ssd_inputs(2, 45, heads=4, headdim=8, groups=2, d_state=16, dtype=torch.float32)
    y_ref = ssd_ref(*args)
    for y in (ssd_chunked(*args, chunk_size=16), ssd(*args, chunk_size=16)):
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length, chunk, groups", [(21, 8, 2), (16, 16, 1)])
def test_chunked_ssd_gradients_match_sequential(length, chunk, groups):
    args = ssd_inputs(2, length, heads=4, headdim=3, groups=groups, d_state=4)
    initial = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    weights = torch.randn(2, length, 4, 3, dtype=torch.float64)
    state_weights = torch.randn(2, 4, 3, 4, dtype=torch.float64)

    def grads(fn, **kw):
        leaves = [a.clone().requires_grad_() for a in args + [initial]]
        y, state = fn(*leaves[:6], initial_state=leaves[6], return_final_state=True, **kw)
        ((y * weights).sum() + (state * state_weights).sum()).backward()
        return [leaf.grad for leaf in leaves]

    for got, expected, name in zip(grads(ssd_chunked, chunk_size=chunk), grads(ssd_ref),
                                   ["x", "dt", "A", "B", "C", "D", "initial_state"]):
        assert got is not None and got.abs().sum() > 0, name
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_ssd_gradcheck():
    args = [a.requires_grad_() for a in ssd_inputs(1, 6, heads=2, headdim=2, groups=1, d_state=3)]
    assert torch.autograd.gradcheck(lambda *a: ssd_chunked(*a, chunk_size=4), args)


@pytest.mark.parametrize("groups", [1, 2])
def test_ssd_equals_mamba1_selective_scan_with_head_scalars_broadcast(groups):
    """The independent oracle: with one group, SSD * silu(z) is JanusDNA's Mamba1 reference scan with
    each head's dt, A and D repeated over its channels (and A over the state). With G groups, each
    group's block of H / G consecutive heads is such a scan on that group's B and C."""
    batch, length, heads, headdim, d_state = 2, 30, 4, 3, 6
    x, dt, A, B, C, D = ssd_inputs(batch, length, heads, headdim, groups=groups, d_state=d_state)
    z = torch.randn(batch, length, heads, headdim, dtype=torch.float64)
    got = ssd_chunked(x, dt, A, B, C, D, chunk_size=8) * F.silu(z)
    per_group = heads // groups
    for g in range(groups):
        h = slice(g * per_group, (g + 1) * per_group)
        expected = selective_scan_ref(
            x[:, :, h].flatten(2),
            dt[:, :, h].repeat_interleave(headdim, dim=2),
            A[h].repeat_interleave(headdim)[:, None].expand(-1, d_state),
            B[:, :, g],
            C[:, :, g],
            D[h].repeat_interleave(headdim),
            z[:, :, h].flatten(2),
        )
        torch.testing.assert_close(got[:, :, h].flatten(2).float(), expected.float(), rtol=1e-5, atol=1e-5)


def test_ssd_step_continues_the_recurrence():
    x, dt, A, B, C, D = ssd_inputs(2, 12, heads=4, headdim=3, groups=2, d_state=5)
    y_ref, final_ref = ssd_ref(x, dt, A, B, C, D, return_final_state=True)
    state = torch.zeros(2, 4, 3, 5, dtype=torch.float64)
    ys = [ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D) for t in range(12)]
    torch.testing.assert_close(torch.stack(ys, 1), y_ref)
    torch.testing.assert_close(state, final_ref)


class LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_chunked_ssd_never_builds_a_per_position_state():
    """No intermediate of size L * d_inner * d_state, forward or backward; without chunking (one
    chunk of the whole length) the within-chunk decay matrix alone would exceed the bound."""
    length, heads, headdim, d_state = 1024, 4, 16, 16
    args = [a.requires_grad_() for a in ssd_inputs(1, length, heads, headdim, 1, d_state, torch.float32)]
    bound = length * heads * headdim * d_state // 4
    with LargestTensor() as watch:
        ssd_chunked(*args, chunk_size=32).sum().backward()
    assert 0 < watch.numel <= bound
    with LargestTensor() as watch:
        ssd_chunked(*args, chunk_size=length)
    assert watch.numel > bound


# --- the Mamba2 mixer ---------------------------------------------------------------------------


def mamba_ssm_mamba2_shapes(d_model, d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1):
    """The state dict of mamba_ssm.modules.mamba2.Mamba2 (default options: no in/out bias, conv bias,
    D_has_hdim False, rmsnorm True), as its constructor defines it."""
    d_inner = expand * d_model
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * ngroups * d_state
    return {
        "in_proj.weight": (2 * d_inner + 2 * ngroups * d_state + nheads, d_model),
        "conv1d.weight": (conv_dim, 1, d_conv),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("preset, ngroups", [("hybridna-tiny", 1), ("hybridna-300m", 1), ("hybridna-7b", 8)])
def test_mixer_state_dict_is_mamba_ssm_mamba2(preset, ngroups):
    cfg = dataclasses.replace(PRESETS[preset], ngroups=ngroups)
    with torch.device("meta"):
        mixer = Mamba2(cfg)
    got = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert got == mamba_ssm_mamba2_shapes(cfg.d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.headdim, ngroups)
    if preset == "hybridna-300m":  # the spec's §1.3 widths
        assert got["in_proj.weight"] == (4384, 1024) and got["conv1d.weight"] == (2304, 1, 4)


def test_mamba_ssm_state_dict_loads_and_drives_the_mixer():
    """A state dict with mamba-ssm's names loads strictly, and the mixer then computes mamba-ssm's
    Mamba2 (written out plainly here: torch conv1d, softplus, sequential SSD, grouped gated RMSNorm)."""
    cfg = dataclasses.replace(TINY, ngroups=2)
    g = torch.Generator().manual_seed(3)
    state = {k: torch.randn(shape, generator=g) * 0.3 for k, shape in mamba_ssm_mamba2_shapes(
        cfg.d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.headdim, cfg.ngroups).items()}
    mixer = Mamba2(cfg)
    mixer.load_state_dict(state, strict=True)

    u = torch.randn(2, 19, cfg.d_model, generator=g)
    e, h, gn = cfg.d_inner, cfg.nheads, cfg.ngroups * cfg.d_state
    z, xBC, dt = (u @ state["in_proj.weight"].t()).split([e, e + 2 * gn, h], dim=-1)
    xBC = F.silu(F.conv1d(xBC.transpose(1, 2), state["conv1d.weight"], state["conv1d.bias"],
                          padding=cfg.d_conv - 1, groups=cfg.conv_dim)[..., :19].transpose(1, 2))
    x, B, C = xBC.split([e, gn, gn], dim=-1)
    y = ssd_ref(x.unflatten(-1, (h, cfg.headdim)), F.softplus(dt + state["dt_bias"]), -torch.exp(state["A_log"]),
                B.unflatten(-1, (cfg.ngroups, cfg.d_state)), C.unflatten(-1, (cfg.ngroups, cfg.d_state)),
                state["D"]).flatten(2)
    gated = (y * F.silu(z)).unflatten(-1, (cfg.ngroups, e // cfg.ngroups))
    normed = (gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + 1e-5)).flatten(-2) * state["norm.weight"]
    expected = normed @ state["out_proj.weight"].t()
    torch.testing.assert_close(mixer(u), expected, rtol=1e-5, atol=1e-5)


def test_gated_norm_is_grouped():
    norm = GatedRMSNorm(8, group_size=4)
    y, z = torch.randn(3, 8), torch.full((3, 8), 30.0)  # silu(30) == 30: the gate is a plain scale
    y[:, 4:] *= 100  # the second group's scale must not leak into the first
    out = norm(y, z)
    first = y[:, :4] * torch.rsqrt(y[:, :4].pow(2).mean(-1, keepdim=True))
    torch.testing.assert_close(out[:, :4], first, rtol=1e-4, atol=1e-4)


def test_mixer_init_follows_mamba_ssm():
    torch.manual_seed(0)
    mixer = Mamba2(dataclasses.replace(TINY, expand=16, headdim=8))  # 64 heads
    A = torch.exp(mixer.A_log)
    dt = F.softplus(mixer.dt_bias)
    assert (A >= 1).all() and (A <= 16).all() and A.std() > 2
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 0.1 * 1.001).all() and dt.max() / dt.min() > 10
    assert torch.equal(mixer.D, torch.ones_like(mixer.D))


# --- the layer stack ----------------------------------------------------------------------------


def test_layer_schedule():
    layers = {name: PRESETS[name].attention_layers for name in ("hybridna-300m", "hybridna-3b", "hybridna-7b")}
    assert layers == {"hybridna-300m": (4, 12, 20), "hybridna-3b": (4, 12), "hybridna-7b": (4, 12, 20, 28)}
    assert dataclasses.replace(PRESETS["hybridna-7b"], attn_offset=3).attention_layers == (3, 11, 19, 27)
    assert dataclasses.replace(PRESETS["hybridna-tiny"], attn_period=0).attention_layers == ()
    model = tiny_model()
    kinds = [type(block.mixer).__name__ for block in model.layers]
    assert kinds == ["Mamba2", "Mamba2", "Attention", "Mamba2", "Mamba2", "Mamba2"]
    with pytest.raises(ValueError, match="layer 0"):
        HybriDNAConfig(attn_offset=0)
    with pytest.raises(ValueError, match="headdim"):
        HybriDNAConfig(headdim=24)
    assert not any("pos" in name for name, _ in model.named_parameters())  # no positional encoding


def spec_parameter_count(d, n_layers, n_attention, n_heads, n_kv_heads, d_state=128, expand=2, headdim=64,
                         groups=1, d_conv=4, vocab=16):
    """The spec's §1.3 arithmetic, term by term."""
    e, h, gn = expand * d, expand * d // headdim, groups * d_state
    mamba = d * (2 * e + 2 * gn + h) + (e + 2 * gn) * (d_conv + 1) + 3 * h + e + e * d
    head_dim = d // n_heads
    attention = 2 * d * d + 2 * d * n_kv_heads * head_dim
    mlp = 3 * d * 2 * d
    return (n_layers - n_attention) * mamba + n_attention * attention + n_layers * (mlp + 2 * d) + d + 2 * vocab * d


@pytest.mark.parametrize("preset, layers, n_attention, gqa, mha", [
    ("hybridna-300m", 24, 3, "299.1M", "302.3M"),
    ("hybridna-3b", 16, 2, "3.12B", "3.18B"),
    ("hybridna-7b", 32, 4, "6.24B", "6.35B"),
])
def test_paper_preset_parameter_counts(preset, layers, n_attention, gqa, mha):
    """Counted on the meta device (nothing allocated). The presets use the spec's recommended GQA with
    8 KV heads; with full multi-head attention the stack gives the spec's headline numbers."""
    def rounded(n):
        return f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}B"

    cfg = PRESETS[preset]
    with torch.device("meta"):
        model = HybriDNA(cfg)
        mha_model = HybriDNA(dataclasses.replace(cfg, n_kv_heads=cfg.n_heads))
    count, mha_count = model.num_parameters(), mha_model.num_parameters()
    assert count == spec_parameter_count(cfg.d_model, layers, n_attention, cfg.n_heads, 8)
    assert mha_count == spec_parameter_count(cfg.d_model, layers, n_attention, cfg.n_heads, cfg.n_heads)
    assert (rounded(count), rounded(mha_count)) == (gqa, mha)
    assert sum(model.module_parameter_counts().values()) == count


def test_tiny_presets_are_cpu_sized():
    for name in ("hybridna-tiny", "hybridna-small"):
        with torch.device("meta"):
            count = HybriDNA(PRESETS[name]).num_parameters()
        assert count < 2e6
    with torch.device("meta"):
        assert 0.40e6 < HybriDNA(PRESETS["hybridna-tiny"]).num_parameters() < 0.42e6  # the spec's §8 ~0.41M


def test_attention_is_gqa_and_matches_dense_reference():
    model = tiny_model()
    attention = model.layers[2].mixer
    assert attention.k_proj.weight.shape == (16, 32) and attention.q_proj.weight.shape == (32, 32)
    x = torch.randn(2, 13, 32)
    q, k, v = attention.project(x)
    assert (q.shape[1], k.shape[1]) == (4, 2)
    expected = attention.o_proj(attention.merge_heads(causal_attention_ref(q, k, v)))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def test_reference_kernels_give_the_same_model():
    model, ids = tiny_model(), random_ids(2, 29)
    with torch.no_grad():
        fast = model(ids)
        with model.reference_kernels():
            assert KERNELS["ssd"] is ssd_ref and KERNELS["attention"] is causal_attention_ref
            slow = model(ids)
    assert KERNELS["ssd"] is ssd
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_causality():
    """forward(ids)[:, s] predicts base s from the bases before it: changing base t leaves every
    output at s <= t exactly as it was, and changes every output after t."""
    model, ids = tiny_model(), random_ids(2, 40)
    t = 17
    changed = ids.clone()
    changed[:, t] = torch.where(ids[:, t] == BASE_IDS[0], BASE_IDS[1], BASE_IDS[0])
    with torch.no_grad():
        before, after = model(ids), model(changed)
        raw_before, raw_after = model.next_token_logits(ids), model.next_token_logits(changed)
    assert torch.equal(before[:, : t + 1], after[:, : t + 1])
    assert ((before[:, t + 1:] - after[:, t + 1:]).abs().amax(-1) > 0).all()
    assert torch.equal(raw_before[:, :t], raw_after[:, :t])
    assert ((raw_before[:, t:] - raw_after[:, t:]).abs().amax(-1) > 0).all()


def test_forward_is_the_next_token_lm_after_bos():
    model, ids = tiny_model(), random_ids(2, 11)
    with torch.no_grad():
        expected = model.next_token_logits(torch.cat([torch.full((2, 1), BOS), ids[:, :-1]], dim=1))
        torch.testing.assert_close(model(ids), expected)
        # position 0 is predicted from BOS alone, whatever follows
        torch.testing.assert_close(model(ids)[:, 0], model(random_ids(2, 5, seed=9))[:, 0])


# --- inference cache ----------------------------------------------------------------------------


def test_cached_decoding_matches_full_forward():
    model, ids = tiny_model(), random_ids(3, 37)
    tokens = torch.cat([torch.full((3, 1), BOS), ids[:, :-1]], dim=1)
    with torch.no_grad():
        full = model(ids)
        cache = model.allocate_cache(3, kv_capacity=4)  # the KV buffers must grow
        mamba_shapes = [tuple(c.ssm_state.shape) for c in cache.layers if hasattr(c, "ssm_state")]
        stepped = torch.stack([model.step(tokens[:, t], cache) for t in range(37)], dim=1)
        assert cache.seen == 37
        assert [tuple(c.ssm_state.shape) for c in cache.layers if hasattr(c, "ssm_state")] == mamba_shapes
        assert mamba_shapes == [(3, TINY.nheads, TINY.headdim, TINY.d_state)] * 5
        torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-5)

        # a prompt in one parallel pass, then steps
        cache = model.allocate_cache(3)
        prompt = model.prefill(tokens[:, :20], cache)
        rest = torch.stack([model.step(tokens[:, t], cache) for t in range(20, 37)], dim=1)
        torch.testing.assert_close(torch.cat([prompt, rest], dim=1), full, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="empty cache"):
            model.prefill(tokens[:, :3], cache)


def test_prefill_shorter_than_the_conv():
    model, ids = tiny_model(), random_ids(1, 9)
    tokens = torch.cat([torch.full((1, 1), BOS), ids[:, :-1]], dim=1)
    with torch.no_grad():
        cache = model.allocate_cache(1)
        prompt = model.prefill(tokens[:, :2], cache)
        rest = torch.stack([model.step(tokens[:, t], cache) for t in range(2, 9)], dim=1)
        torch.testing.assert_close(torch.cat([prompt, rest], dim=1), model(ids), rtol=1e-5, atol=1e-5)


# --- echo embeddings ----------------------------------------------------------------------------


def test_echo_embeddings():
    model, ids = tiny_model(), random_ids(2, 21)
    length = ids.shape[1]
    with torch.no_grad():
        echo_run = model.trunk(torch.cat([torch.full((2, 1), BOS), ids, ids], dim=1))
        causal = model.hidden_states(ids)
        echo = model.echo_states(ids)
        # the second copy is positions L+1 .. 2L of [BOS] x x; the first copy is the plain causal run
        assert echo.shape == causal.shape == (2, length, TINY.d_model)
        torch.testing.assert_close(echo, echo_run[:, length + 1:])
        torch.testing.assert_close(echo_run[:, 1:length + 1], causal, rtol=1e-5, atol=1e-5)

        # the last base reaches every echo state, but no causal state before it
        changed = ids.clone()
        changed[:, -1] = torch.where(ids[:, -1] == BASE_IDS[0], BASE_IDS[1], BASE_IDS[0])
        assert ((model.echo_states(changed) - echo).abs().amax(-1) > 0).all()
        assert torch.equal(model.hidden_states(changed)[:, :-1], causal[:, :-1])

        # the default sequence embedding is the echo embedding; mean and last pool the causal states
        assert model.default_pooling == "echo" and model.poolings[0] == "echo"
        torch.testing.assert_close(model.sequence_embedding(ids), echo.mean(1))
        torch.testing.assert_close(model.sequence_embedding(ids, "mean"), causal.mean(1))
        torch.testing.assert_close(model.sequence_embedding(ids, "last"), causal[:, -1])

        hidden, log_probs = model.hidden_and_base_log_probs(ids)
        torch.testing.assert_close(hidden, causal)
        torch.testing.assert_close(log_probs, model.base_log_probs(ids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, length))


# --- losses, bookkeeping, checkpoint ------------------------------------------------------------


def test_pretraining_loss_is_next_token_cross_entropy_without_n():
    """Each base scored from a separate run on [BOS] and the bases before it; N bases not scored."""
    model, ids = tiny_model(), random_ids(2, 12)
    ids[0, 3] = ids[1, 0] = ids[1, 7] = N
    terms = []
    with torch.no_grad():
        for t in range(12):
            prefix = torch.cat([torch.full((2, 1), BOS), ids[:, :t]], dim=1)
            log_probs = torch.log_softmax(model.next_token_logits(prefix)[:, -1], dim=-1)
            terms += [-log_probs[b, ids[b, t]] for b in range(2) if ids[b, t] != N]
        expected = torch.stack(terms).mean()
        loss, parts = model.pretraining_loss(ids)
        total, count = model.validation_loss(ids)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert parts["cross_entropy"] is loss
    assert count == 21
    torch.testing.assert_close(total / count, expected, rtol=1e-5, atol=1e-5)


def test_loss_trains():
    """A few optimizer steps on a periodic ACGT... sequence take the loss well below ln 4 (so the
    model uses its left context), and gradients reach every parameter."""
    torch.manual_seed(0)
    model = HybriDNA(TINY)
    ids = torch.tensor(BASE_IDS * 8).repeat(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    first = None
    for _ in range(15):
        loss, _ = model.pretraining_loss(ids)
        optimizer.zero_grad()
        loss.backward()
        first = first if first is not None else loss.item()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n != "embed.weight" and "lm_head" not in n)
    assert first > 2.5 and loss.item() < 0.5


def test_optimizer_groups():
    model = tiny_model()
    decay, no_decay = model.optimizer_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert {"layers.0.mixer.A_log", "layers.0.mixer.D", "layers.0.mixer.dt_bias", "layers.0.mixer.conv1d.bias",
            "layers.0.mixer.norm.weight", "layers.0.mixer_norm.weight", "norm_f.weight", "embed.weight"} <= exempt
    assert not exempt & {"layers.0.mixer.in_proj.weight", "layers.2.mixer.q_proj.weight", "lm_head.weight"}


def test_capabilities():
    assert HybriDNA.arch == "hybridna" and HybriDNA.prediction_context == LEFT
    assert HybriDNA.capabilities() == {"per_base_prediction", "generation"}
    dnalm.require(tiny_model(), "generation", "janus generate")


def test_save_load_round_trip(tmp_path):
    model, ids = tiny_model(), random_ids(2, 15)
    path = dnalm.save(model, tmp_path / "hyb")
    config = json.loads((path / "config.json").read_text())
    assert config["arch"] == "hybridna" and config["ngroups"] == 2 and config["name"] == "hybridna-test"
    loaded = dnalm.load(path)
    assert isinstance(loaded, HybriDNA) and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    preset = dnalm.from_preset("hybridna-tiny", seed=0)
    assert isinstance(preset, HybriDNA) and preset.config.name == "hybridna-tiny"
    assert set(dnalm.architecture("hybridna").presets) == set(PRESETS)
    assert all(name.startswith("hybridna-") for name in PRESETS)


def test_batch_invariant():
    """With batch_invariant(), each sequence's outputs are bit-identical to its run alone (without it,
    on this machine, some rows of this batch differ by an ulp)."""
    model, ids = tiny_model(PRESETS["hybridna-small"]), random_ids(4, 75)
    with torch.no_grad():
        alone = [model.hidden_and_base_log_probs(ids[i:i + 1]) for i in range(4)]
        invariant = model.batch_invariant().hidden_and_base_log_probs(ids)
        assert model.batch_invariant(False) is model and not model.per_sequence
    for i in range(4):
        assert torch.equal(invariant[0][i], alone[i][0][0]) and torch.equal(invariant[1][i], alone[i][1][0])
