"""HybriDNA (Ma et al. 2025), top to bottom: a causal hybrid Mamba2/attention DNA language model.

    h = Embedding(tokens)                               # no positional encoding anywhere
    for i in range(n_layers):                           # attention on i % attn_period == attn_offset
        h = h + mixer_i(RMSNorm(h))                     # Mamba2 (SSD), or causal GQA attention
        h = h + SwiGLU_i(RMSNorm(h))                    # an MLP in every layer, none is MoE
    logits = lm_head(RMSNorm(h))                        # untied, over the shared 16-row vocabulary

The Mamba2 mixer has mamba-ssm's `Mamba2` parameter names and shapes (in_proj -> [z | xBC | dt],
depthwise causal conv1d with bias over xBC, dt_bias, A_log and D per head, the gated RMSNorm
`norm`, out_proj), so a mamba-ssm Mamba2 state dict loads into it unchanged. Its SSD kernel is in
ssd.py, beside the sequential recurrence it is tested against.

Conventions and choices (spec = ../shared/specs/hybridna.md; where it leaves a gap or we differ):

- Attention layers sit at i % 8 == 4 (0-based; the spec's recommendation and the release's
  layout), configurable through attn_period / attn_offset; attn_period = 0 gives a pure Mamba2
  stack. Layer 0 is always Mamba2 (attention at layer 0 would have no order information).
- Every sequence starts with [BOS] (id 2). The spec leaves special tokens open (§7.10; the
  release's 131,074 = 131,072 + 2 hints at specials). With a BOS every base of a window gets a
  real prediction, x_0 included (from the BOS alone), so a window's log-likelihood is a full joint
  log p(x) and `janus likelihood` scores every position. It is added inside the model: callers
  pass bases only.
- forward(ids)[:, t] is the prediction *for* ids[:, t] from [BOS] + ids[:, :t] (left context
  only, prediction_context LEFT), aligned with the bases like every janus architecture's outputs.
  Internally that is the usual next-token LM run on [BOS] + ids[:, :-1]; next_token_logits()
  gives the unshifted form. pretraining_loss is therefore next-token cross-entropy over the
  window, N positions excluded.
- Echo embeddings (spec §3): hidden_states(ids) runs [BOS] + x + x (plain concatenation, no
  separator, as in the paper's AACG -> AACGAACG) and returns the final-norm states of the second
  copy, [B, L, d] (echo_states): each of them has seen the whole sequence. default_pooling is
  "echo", the mean of those states (the paper's "(E)" setting). hidden_states(ids) are the plain
  causal per-base states (each base's own position, having seen the bases up to and including
  it), which the generic poolings use: "mean" (the paper's BEND/LRB standard) and "last" (the
  last base, the paper's GUE standard), also "max" and "center".
- The states are taken after the final RMSNorm (the spec's recommendation, HF last_hidden_state).
- Presets follow the spec's recommended fields, including GQA attention with 8 KV heads and head
  dim 64. That makes the paper sizes 299.1M / 3.12B / 6.24B parameters, the spec's "GQA with 8 KV
  heads" row; its headline 302.3M / 3.18B / 6.35B is the same stack with full multi-head
  attention (n_kv_heads = n_heads), which tests/test_hybridna.py checks too.
- Initialisation as the spec describes mamba-ssm's: N(0, 0.02) for linear and embedding weights,
  the residual output projections (out_proj, o_proj, down_proj) scaled by 1/sqrt(2 n_layers);
  A = U[1, 16], dt log-uniform in [1e-3, 1e-1] (floor 1e-4) through dt_bias = softplus^-1(dt),
  D = 1, the conv at PyTorch's default. No weight decay on biases, dt_bias, A_log, D, norm weights
  and the embedding.
- On CPU the depthwise causal conv is d_conv shifted multiply-adds over the same conv1d weights:
  torch's depthwise Conv1d backward took most of a CPU training step.
- batch_invariant() runs the stack one sequence at a time: elementwise CPU kernels (softplus of
  the narrow [B, L, nheads] dt, for one) round differently depending on the batch size.

Inference cache (for generation): allocate_cache(batch) and step(token_ids, cache) -> logits of
the next token. A Mamba2 layer keeps conv_state [B, E + 2GN, d_conv] and ssm_state [B, H, P, N],
so its cost per token is constant; an attention layer keeps a growing KV cache. prefill(tokens,
cache) runs a prompt in one parallel pass and leaves the cache where step() continues;
reorder_cache(cache, indices) selects rows for beam search (dnalm.generation).

Prompt tokens (conditional generation, dnalm.prompts): config.prompt_tokens names them; prompt
token j is id vocab_size + j, an embedding row after the shared vocabulary's 16 (the embedding has
vocab_size + len(prompt_tokens) rows, so a config rebuilds it). The LM head has no rows for them:
nothing ever predicts a prompt token. add_prompt_tokens() appends randomly initialised rows
(N(0, 0.02), the embedding's init) and leaves the existing rows unchanged. A conditioned sequence
is [BOS] + prompt tokens + bases; prompted_logits() gives the bases' predictions only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from dnalm.interface import DNALM, IGNORE_INDEX, LEFT, POOLINGS, base_labels
from dnalm.layers import CausalSelfAttention, RMSNorm, SwiGLU
from dnalm.tokenizer import BASE_IDS, PADDED_VOCAB_SIZE

from . import ssd as ssd_kernels
from .ssd import KERNELS, ssd_step

BOS = 2  # [BOS] in the shared vocabulary (dnalm/tokenizer.py)


# mamba-ssm Mamba2 initialisation defaults
A_INIT_RANGE = (1.0, 16.0)
DT_MIN, DT_MAX, DT_INIT_FLOOR = 1e-3, 1e-1, 1e-4


@dataclass(frozen=True)
class HybriDNAConfig:
    d_model: int = 64
    n_layers: int = 8
    attn_period: int = 8  # layer i is attention when i % attn_period == attn_offset; 0: no attention
    attn_offset: int = 4
    n_heads: int = 4  # attention query heads (head dim d_model / n_heads)
    n_kv_heads: int = 2  # attention key/value heads (GQA)
    d_state: int = 16  # Mamba2 N
    d_conv: int = 4
    expand: int = 2  # d_inner = expand * d_model
    headdim: int = 16  # Mamba2 P; nheads = d_inner / headdim
    ngroups: int = 1  # Mamba2 G: B/C groups, each shared by nheads / ngroups heads
    ffn_dim: int = 0  # SwiGLU hidden width; 0: 2 * d_model (the paper's intermediate size)
    chunk_size: int = 64  # SSD chunk length Q
    rms_norm_eps: float = 1e-6  # the block and final norms; the gated norm in Mamba2 uses 1e-5
    vocab_size: int = PADDED_VOCAB_SIZE
    max_seq_len: int = 1024
    prompt_tokens: tuple = ()  # names of the prompt tokens (ids vocab_size, vocab_size + 1, ...)
    name: str = "hybridna"
    extra: dict = field(default_factory=dict, compare=False)  # provenance, never read by the model

    def __post_init__(self):
        object.__setattr__(self, "prompt_tokens", tuple(self.prompt_tokens))  # JSON gives a list
        problems = []
        if len(set(self.prompt_tokens)) != len(self.prompt_tokens):
            problems.append("prompt_tokens has repeated names")
        if self.d_inner % self.headdim:
            problems.append(f"d_inner {self.d_inner} (expand * d_model) is not divisible by headdim {self.headdim}")
        elif self.nheads % self.ngroups:
            problems.append(f"the {self.nheads} Mamba2 heads do not divide into {self.ngroups} groups")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            problems.append(f"d_model {self.d_model}, {self.n_heads} heads, {self.n_kv_heads} key/value heads: "
                            "the width must divide into heads and the heads into key/value groups")
        if self.attn_period < 0 or (self.attn_period and not 0 <= self.attn_offset < self.attn_period):
            problems.append(f"attn_offset {self.attn_offset} must be in 0..attn_period-1 ({self.attn_period})")
        if self.attn_period and self.attn_offset == 0:
            problems.append("layer 0 must be a Mamba2 layer (attention has no positional encoding): attn_offset > 0")
        if min(self.d_model, self.n_layers, self.d_state, self.d_conv, self.expand, self.chunk_size) < 1:
            problems.append("d_model, n_layers, d_state, d_conv, expand and chunk_size must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state

    @property
    def resolved_ffn_dim(self) -> int:
        return self.ffn_dim or 2 * self.d_model

    def is_attention_layer(self, i: int) -> bool:
        return self.attn_period > 0 and i % self.attn_period == self.attn_offset

    @property
    def attention_layers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n_layers) if self.is_attention_layer(i))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompt_tokens"] = list(self.prompt_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HybriDNAConfig":
        return cls(**d)


def _paper(name: str, d_model: int, n_layers: int) -> HybriDNAConfig:
    """Table A1 plus the spec's recommended fields (§1.2): Mamba2 expand 2, headdim 64,
    d_state 128, G = 1, d_conv 4, chunk 256; SwiGLU 2d; attention 64-dim heads, 8 KV heads."""
    return HybriDNAConfig(d_model=d_model, n_layers=n_layers, n_heads=d_model // 64, n_kv_heads=8, d_state=128,
                          headdim=64, ffn_dim=2 * d_model, chunk_size=256, max_seq_len=131_072, name=name)


PRESETS = {
    # for CPU work: the spec's §8 tiny configuration (about 0.4M parameters) and a wider one
    "hybridna-tiny": HybriDNAConfig(name="hybridna-tiny"),
    "hybridna-small": HybriDNAConfig(d_model=128, n_layers=8, n_heads=4, n_kv_heads=2, d_state=32, headdim=32,
                                     max_seq_len=8192, name="hybridna-small"),
    # the paper's sizes (Table A1)
    "hybridna-300m": _paper("hybridna-300m", 1024, 24),
    "hybridna-3b": _paper("hybridna-3b", 4096, 16),
    "hybridna-7b": _paper("hybridna-7b", 4096, 32),
}


# --- inference cache --------------------------------------------------------------------------


@dataclass
class Mamba2State:
    conv_state: torch.Tensor  # [B, conv_dim, d_conv]: the last d_conv conv inputs, newest last
    ssm_state: torch.Tensor  # [B, H, P, N], float32


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, in buffers that double when full."""

    k: torch.Tensor  # [B, H_kv, capacity, head_dim]
    v: torch.Tensor
    length: int = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v [B, H_kv, T, head_dim]; returns every key and value so far."""
        needed = self.length + k.shape[2]
        if needed > self.k.shape[2]:
            capacity = max(needed, 2 * self.k.shape[2])
            grow = (0, 0, 0, capacity - self.k.shape[2])
            self.k, self.v = F.pad(self.k, grow), F.pad(self.v, grow)
        self.k[:, :, self.length:needed] = k
        self.v[:, :, self.length:needed] = v
        self.length = needed
        return self.k[:, :, :needed], self.v[:, :, :needed]


@dataclass
class InferenceCache:
    layers: list  # one Mamba2State or KVCache per layer
    seen: int = 0  # tokens consumed so far

    def reorder(self, indices: torch.Tensor) -> "InferenceCache":
        """A new cache whose row i is row indices[i] of this one (rows may repeat)."""
        layers = []
        for c in self.layers:
            if isinstance(c, Mamba2State):
                layers.append(Mamba2State(c.conv_state.index_select(0, indices), c.ssm_state.index_select(0, indices)))
            else:
                layers.append(KVCache(c.k.index_select(0, indices), c.v.index_select(0, indices), c.length))
        return InferenceCache(layers, self.seen)


# --- modules ----------------------------------------------------------------------------------


class GatedRMSNorm(nn.Module):
    """mamba-ssm's RMSNormGated with norm_before_gate=False: RMSNorm(y * silu(z)) * weight, the RMS
    taken over groups of group_size channels; in float32."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.group_size = eps, group_size
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y, z):
        dtype = y.dtype
        g = (y.float() * F.silu(z.float())).unflatten(-1, (-1, self.group_size))
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return (g.flatten(-2) * self.weight.float()).to(dtype)


class Mamba2(nn.Module):
    """The Mamba2 mixer, with mamba-ssm's parameter names and shapes."""

    def __init__(self, cfg: HybriDNAConfig):
        super().__init__()
        self.cfg = cfg
        e, h, gn = cfg.d_inner, cfg.nheads, cfg.ngroups * cfg.d_state
        self.split_sizes = (e, e + 2 * gn, h)  # in_proj output: [z | xBC | dt]
        self.in_proj = nn.Linear(cfg.d_model, 2 * e + 2 * gn + h, bias=False)
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, cfg.d_conv, groups=cfg.conv_dim, padding=cfg.d_conv - 1)
        dt = torch.exp(torch.rand(h) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
        dt = dt.clamp(min=DT_INIT_FLOOR)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.empty(h).uniform_(*A_INIT_RANGE)))
        self.D = nn.Parameter(torch.ones(h))
        self.norm = GatedRMSNorm(e, group_size=e // cfg.ngroups, eps=1e-5)
        self.out_proj = nn.Linear(e, cfg.d_model, bias=False)

    def split_xBC(self, xBC):
        """[..., conv_dim] -> x [..., H, P], B [..., G, N], C [..., G, N]."""
        cfg = self.cfg
        gn = cfg.ngroups * cfg.d_state
        x, B, C = xBC.split((cfg.d_inner, gn, gn), dim=-1)
        return (x.unflatten(-1, (cfg.nheads, cfg.headdim)), B.unflatten(-1, (cfg.ngroups, cfg.d_state)),
                C.unflatten(-1, (cfg.ngroups, cfg.d_state)))

    def forward(self, u, cache: Mamba2State | None = None):
        """u [B, L, d] -> [B, L, d]. With a (fresh) cache, also leave the conv and SSM states in it."""
        z, xBC, dt = self.in_proj(u).split(self.split_sizes, dim=-1)
        x, B, C = self.split_xBC(KERNELS["causal_conv"](xBC, self.conv1d.weight.squeeze(1), self.conv1d.bias))
        dt = F.softplus(dt.float() + self.dt_bias.float())
        A = -torch.exp(self.A_log.float())
        out = KERNELS["ssd"](x, dt, A, B, C, self.D, chunk_size=self.cfg.chunk_size,
                             return_final_state=cache is not None)
        if cache is not None:
            y, final_state = out
            cache.ssm_state.copy_(final_state)
            d_conv = cache.conv_state.shape[-1]
            cache.conv_state.copy_(F.pad(xBC.transpose(1, 2), (d_conv - xBC.shape[1], 0))[..., -d_conv:])
        else:
            y = out
        return self.out_proj(self.norm(y.flatten(-2), z))

    def allocate_cache(self, batch: int, device, dtype) -> Mamba2State:
        cfg = self.cfg
        return Mamba2State(torch.zeros(batch, cfg.conv_dim, cfg.d_conv, device=device, dtype=dtype),
                           torch.zeros(batch, cfg.nheads, cfg.headdim, cfg.d_state, device=device,
                                       dtype=torch.float32))

    def step(self, u, cache: Mamba2State):
        """One token: u [B, d] -> [B, d]; updates the cache in place. Constant cost per token."""
        z, xBC, dt = self.in_proj(u).split(self.split_sizes, dim=-1)
        conv_state = cache.conv_state
        conv_state.copy_(conv_state.roll(-1, dims=-1))
        conv_state[..., -1] = xBC
        xBC = (conv_state * self.conv1d.weight.squeeze(1)).sum(-1)
        if self.conv1d.bias is not None:
            xBC = xBC + self.conv1d.bias
        x, B, C = self.split_xBC(F.silu(xBC))
        dt = F.softplus(dt.float() + self.dt_bias.float())
        y = ssd_step(cache.ssm_state, x, dt, -torch.exp(self.A_log.float()), B, C, self.D).to(u.dtype)
        return self.out_proj(self.norm(y.flatten(-2), z))


class Attention(CausalSelfAttention):
    """dnalm's causal GQA self-attention (no positional encoding), through the swappable kernel,
    with a KV cache for decoding."""

    def forward(self, x, cache: KVCache | None = None):
        q, k, v = self.project(x)
        if cache is not None:
            cache.append(k, v)
        return self.o_proj(self.merge_heads(KERNELS["attention"](q, k, v)))

    def allocate_cache(self, batch: int, device, dtype, capacity: int = 64) -> KVCache:
        shape = (batch, self.n_kv_heads, capacity, self.head_dim)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def step(self, x, cache: KVCache):
        """One token: x [B, d] -> [B, d]; attends to every cached position and itself."""
        q, k, v = self.project(x[:, None])
        k, v = cache.append(k, v)
        if self.n_kv_heads != self.n_heads:
            repeat = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        return self.o_proj(self.merge_heads(F.scaled_dot_product_attention(q, k, v)))[:, 0]


class Block(nn.Module):
    """h + mixer(RMSNorm(h)), then + SwiGLU(RMSNorm(h))."""

    def __init__(self, cfg: HybriDNAConfig, attention: bool):
        super().__init__()
        self.is_attention = attention
        self.mixer_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mixer = Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads) if attention else Mamba2(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.ffn = SwiGLU(cfg.d_model, cfg.resolved_ffn_dim)

    def forward(self, h, cache=None):
        h = h + self.mixer(self.mixer_norm(h), cache)
        return h + self.ffn(self.ffn_norm(h))

    def step(self, h, cache):
        h = h + self.mixer.step(self.mixer_norm(h), cache)
        return h + self.ffn(self.ffn_norm(h))


class HybriDNA(DNALM):
    arch = "hybridna"
    prediction_context = LEFT
    is_causal = True
    default_pooling = "echo"
    poolings = ("echo", *POOLINGS)
    reference_pretraining_lr = (1e-3, 2**19)  # HybriDNA-300M: peak 1e-3 at 0.5M tokens per batch

    def __init__(self, cfg: HybriDNAConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size + len(cfg.prompt_tokens), cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, cfg.is_attention_layer(i)) for i in range(cfg.n_layers))
        self.norm_f = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(lambda m: init_weights(m, cfg.n_layers))
        # Elementwise CPU kernels round a vectorised element and a scalar-tail element differently,
        # and which elements fall in the tail depends on the batch size (e.g. softplus over the
        # [B, L, nheads] dt), so a sequence's outputs can move by an ulp with its batch mates.
        # batch_invariant() runs the stack one sequence at a time instead.
        self.per_sequence = False

    # --- the stack --------------------------------------------------------------------------

    def trunk(self, tokens, cache: InferenceCache | None = None):
        """tokens [B, T] exactly as given (no BOS added) -> final-norm states [B, T, d]; state t has
        seen tokens <= t. With an empty cache, also fill it (prefill)."""
        if self.per_sequence and cache is None and tokens.shape[0] > 1:
            return torch.cat([self.trunk(row) for row in tokens.split(1)])
        h = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            h = layer(h, None if cache is None else cache.layers[i])
        if cache is not None:
            cache.seen += tokens.shape[1]
        return self.norm_f(h)

    @staticmethod
    def with_bos(ids):
        return F.pad(ids, (1, 0), value=BOS)

    def next_token_logits(self, tokens):
        """The unshifted LM: tokens [B, T] as given -> logits [B, T, vocab] (float32), position t
        predicting token t+1 from tokens <= t."""
        return self.lm_head(self.trunk(tokens)).float()

    def forward(self, input_ids):
        """Logits [B, L, 16]; position t predicts base t from [BOS] and the bases before it."""
        return self.next_token_logits(self.with_bos(input_ids)[:, :-1])

    def hidden_states(self, input_ids):
        """Plain causal per-base states [B, L, d]: base t's own position, having seen bases <= t."""
        return self.trunk(self.with_bos(input_ids))[:, 1:]

    def echo_states(self, input_ids):
        """Echo states [B, L, d]: the final-norm states of the second copy of [BOS] + x + x, each
        having seen the whole sequence."""
        length = input_ids.shape[1]
        return self.trunk(self.with_bos(torch.cat([input_ids, input_ids], dim=1)))[:, length + 1:]

    def sequence_embedding(self, input_ids, pooling: str | None = None):
        """[B, d]: "echo" (the default) the mean of the echo states; mean, max, center or last
        over the plain causal states ("last": the last base, which has seen the whole sequence)."""
        pooling = pooling or self.default_pooling
        if pooling == "echo":
            return self.echo_states(input_ids).mean(1)
        return super().sequence_embedding(input_ids, pooling)

    def base_log_probs(self, input_ids):
        return torch.log_softmax(self(input_ids)[..., list(BASE_IDS)], dim=-1)

    def hidden_and_base_log_probs(self, input_ids):
        """(causal hidden states, base log-probs) from one pass over [BOS] + x."""
        h = self.trunk(self.with_bos(input_ids))
        logits = self.lm_head(h[:, :-1]).float()
        return h[:, 1:], torch.log_softmax(logits[..., list(BASE_IDS)], dim=-1)

    # --- training ---------------------------------------------------------------------------

    def pretraining_loss(self, input_ids):
        """Next-token prediction: cross-entropy of each base from [BOS] and the bases before it,
        N positions excluded."""
        ce = F.cross_entropy(self(input_ids).flatten(0, 1), base_labels(input_ids).flatten(),
                             ignore_index=IGNORE_INDEX)
        return ce, {"cross_entropy": ce}

    def validation_loss(self, input_ids):
        labels = base_labels(input_ids).flatten()
        total = F.cross_entropy(self(input_ids).flatten(0, 1), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total, (labels != IGNORE_INDEX).sum()

    def shard_units(self):
        return list(self.layers)

    def optimizer_groups(self, weight_decay: float):
        """AdamW parameter groups: no decay on biases, dt_bias, A_log, D, norm weights and the embedding."""
        no_decay_names = {"bias", "dt_bias", "A_log", "D"}
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                exempt = name in no_decay_names or isinstance(module, (RMSNorm, GatedRMSNorm, nn.Embedding))
                (no_decay if exempt else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    # --- inference cache --------------------------------------------------------------------

    def allocate_cache(self, batch: int, kv_capacity: int = 64) -> InferenceCache:
        """An empty cache for batch sequences (KV buffers start at kv_capacity tokens and grow)."""
        p = self.lm_head.weight
        return InferenceCache([
            layer.mixer.allocate_cache(batch, p.device, p.dtype, kv_capacity) if layer.is_attention
            else layer.mixer.allocate_cache(batch, p.device, p.dtype)
            for layer in self.layers
        ])

    def prefill(self, tokens, cache: InferenceCache):
        """Run tokens [B, T] (start them with BOS) through an empty cache in one parallel pass;
        returns their next-token logits [B, T, vocab] (float32)."""
        if cache.seen:
            raise ValueError("prefill needs an empty cache; continue with step()")
        return self.lm_head(self.trunk(tokens, cache)).float()

    def step(self, token_ids, cache: InferenceCache):
        """Feed one token per sequence, token_ids [B] (the first is BOS); returns the logits of the
        next token [B, vocab] (float32) and advances the cache."""
        h = self.embed(token_ids.reshape(-1))
        for layer, layer_cache in zip(self.layers, cache.layers):
            h = layer.step(h, layer_cache)
        cache.seen += 1
        return self.lm_head(self.norm_f(h)).float()

    def generation_prefix(self, prompt_ids):
        """[B, T] prompt tokens and bases -> [BOS] + prompt, what prefill() takes."""
        return self.with_bos(prompt_ids)

    def reorder_cache(self, cache: InferenceCache, indices):
        return cache.reorder(indices.to(self.lm_head.weight.device))

    # --- prompt tokens ----------------------------------------------------------------------

    def add_prompt_tokens(self, names, generator: torch.Generator | None = None) -> None:
        new = list(dict.fromkeys(n for n in names if n not in self.prompt_tokens))
        if not new:
            return
        old = self.embed.weight
        rows = torch.empty(len(new), old.shape[1], dtype=torch.float32).normal_(0.0, 0.02, generator=generator)
        embed = nn.Embedding(old.shape[0] + len(new), old.shape[1], device=old.device, dtype=old.dtype)
        with torch.no_grad():
            embed.weight[: old.shape[0]] = old
            embed.weight[old.shape[0]:] = rows.to(old)
        embed.weight.requires_grad_(old.requires_grad)
        self.embed = embed
        self.config = replace(self.config, prompt_tokens=self.prompt_tokens + tuple(new))

    def prompted_logits(self, prompt_ids, input_ids):
        """Logits [B, L, 16] of the bases given [BOS] + prompt: position t predicts base t."""
        k = prompt_ids.shape[1]
        tokens = self.with_bos(torch.cat([prompt_ids, input_ids], dim=1))[:, :-1]
        return self.next_token_logits(tokens)[:, k:]

    # --- bookkeeping ------------------------------------------------------------------------

    def batch_invariant(self, enabled: bool = True) -> "HybriDNA":
        """Make each sequence's outputs bit-identical whatever else is in its batch (the stack runs
        one sequence at a time; slower for short sequences), for inference; returns self."""
        self.per_sequence = enabled
        return self

    @classmethod
    def reference_kernels(cls):
        return ssd_kernels.reference_kernels()

    def module_parameter_counts(self) -> dict[str, int]:
        def count(modules):
            return sum(p.numel() for m in modules for p in m.parameters())

        blocks = list(self.layers)
        return {
            "embedding": count([self.embed]),
            "mamba2 mixers": count([b.mixer for b in blocks if not b.is_attention]),
            "attention": count([b.mixer for b in blocks if b.is_attention]),
            "mlp": count([b.ffn for b in blocks]),
            "norms": count([b.mixer_norm for b in blocks] + [b.ffn_norm for b in blocks] + [self.norm_f]),
            "lm_head": count([self.lm_head]),
        }


RESIDUAL_OUTPUTS = ("out_proj", "o_proj", "down_proj")


def init_weights(module: nn.Module, n_layers: int, std: float = 0.02):
    """N(0, std) for linear and embedding weights, zero linear biases; the projections that write
    into the residual stream get std / sqrt(2 n_layers) (two residual branches per layer)."""
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    for name in RESIDUAL_OUTPUTS + ("in_proj", "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"):
        linear = getattr(module, name, None)
        if isinstance(linear, nn.Linear):
            scale = 1 / math.sqrt(2 * n_layers) if name in RESIDUAL_OUTPUTS else 1.0
            nn.init.normal_(linear.weight, mean=0.0, std=std * scale)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
    if isinstance(module, HybriDNA):
        nn.init.normal_(module.lm_head.weight, mean=0.0, std=std)
