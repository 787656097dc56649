"""MergeDNA (Li et al. 2025), top to bottom: a hierarchical autoencoder Transformer whose Local
Encoder is a learned, context-aware tokenizer.

    ids [B, N] --embed--> Local Encoder: 4 x (local-window block -> local merge)   Z_L [B, L, d], S
               Latent Encoder: 20 full-attention blocks over the L tokens          Z'_L
               Latent Decoder: 4 full-attention blocks                             Ẑ_L
               unmerge (S^T Ẑ_L) + offset/length embeddings
               Local Decoder: 2 local-window blocks at base resolution -> head     logits [B, N, 16]

Every block is LLaMA-style: pre-RMSNorm, attention without biases, SwiGLU MLP; each module ends
in an RMSNorm. RoPE everywhere: at each token's centre base coordinate (start + end - 1) / 2,
fractional allowed, in the Local Encoder, Latent Encoder and Latent Decoder, at integer base
positions in the Local Decoder. Local attention is a band over current token indices,
|t - u| <= attention_window (8: 17 keys); the merge step (merging.py) keeps every token inside a
16-base block. PAD bases are tokens of their own that never merge and that no real token attends to.

Pre-training (pretraining_loss) runs the paper's three passes with one compression ratio drawn per
batch (Normal(0.5, 0.05) clipped to [0.4, 0.6]):
1. MTR: reconstruct every base through the whole autoencoder;
2. latent MTR (weight 0.25): the Local Encoder's output of pass 1, detached, goes through the
   Latent Encoder with ToMe merging L -> K = L/2 in every block, is unmerged back to L, then
   decoded; the Local Encoder gets no gradient from it;
3. AMTM: K local tokens drawn without replacement with P ∝ 1/g² (g the size of their latent group
   in pass 2) are masked ([MASK] on all their bases), the masked sequence is re-tokenised with the
   same ratio and run through the whole network without latent merging; the loss is the
   cross-entropy of the masked bases (mean over masked bases, or the paper's sum / K).
Everywhere else (forward, embeddings, tokenize, validation) the ratio is fixed,
config.compression_ratio (0.5) unless a call passes another, and the Latent Encoder never merges.

What the commands get:
- forward: the reconstruction, which sees the base it predicts; masked_base_log_probs: one pass
  over a window holding [MASK] tokens, predicting the bases under them (AMTM-style, no latent
  merging); base_log_probs: each base predicted with that base alone masked, one pass per base
  (prediction_context MASKED), what likelihood and score-variants use;
- hidden_states: each base gets its token's Latent Encoder output (unmerge of Z'_L), the decoders
  are dropped; sequence_embedding "mean" is the size-weighted mean of the Latent Encoder's real
  tokens, which equals the mean of hidden_states over the real bases;
- tokenize: each sequence's learned token boundaries (starts and sizes), run one sequence at a
  time, so a sequence's tokens never depend on its batch mates;
- base_features: the Local Decoder's per-base states fed by the Latent Encoder, for token-level
  heads (spec A17);
- batch_invariant(): every entry point runs one sequence at a time with its trailing PADs cut off
  (merge decisions are discrete, so bit-identical inputs are what makes them batch-independent).

Choices where the spec (../shared/specs/mergedna.md) leaves a [D] open or where this file differs:
- the merge follows spec §1.4 exactly (adjacent pairs, bipartite parity alternating by layer,
  16-base blocks, per-layer budget ranked over the whole sequence, constant schedule with the
  remainder in the last layer, straight-through gate); merges a layer cannot make (too few
  candidates, only in degenerate inputs) are carried over to the next layer;
- merge blocks are counted from a row's first real base, not from position 0, so left padding
  does not move the blocks;
- the grouping embedding is Linear(d -> group_dim) on its own RMSNorm, L2-normalised (spec A7);
- latent merging weights groups by their number of bases (consistent with the local merge, so a
  latent token is the mean over its bases), AMTM's g counts local tokens (spec §2.3);
- the base embedding is counted in the Local Encoder's parameters, the offset/length embeddings,
  final norm and head in the Local Decoder's, so the four module counts sum to the total;
- "cross_entropy" of pretraining_loss (and validation_loss) is the MTR reconstruction loss at
  base resolution, N and PAD excluded;
- AMTM masks K_b = the latent token count of pass 2 local tokens per row (the paper's K), drawn by
  Gumbel top-k, which is sequential sampling without replacement; the loss defaults to the mean
  over masked bases (amtm_normalize="tokens" is eq. 7's sum / K), spec B5-B7;
- the DTEM soft relaxation (spec A6 (c)) is not implemented: merge_grad is "ste" or "none".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dnalm.interface import DNALM, IGNORE_INDEX, MASKED, pool as pool_states
from dnalm.layers import CausalSelfAttention, RMSNorm, SwiGLU, swapped_kernels
from dnalm.tokenizer import BASE_IDS, MASK, PAD, PADDED_VOCAB_SIZE

from . import merging
from .merging import LatentState, TokenState, unmerge


# --- attention kernels ---------------------------------------------------------------------------


def rope(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of x [B, H, T, hd] at (possibly fractional) positions pos [B, T]; the
    angles are computed in float64 so long sequences keep their precision."""
    half = x.shape[-1] // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    angle = pos.to(device=x.device, dtype=torch.float64)[:, None, :, None] * inv_freq
    cos, sin = angle.cos().float(), angle.sin().float()
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).to(x.dtype)


def band_attention(q, k, v, key_ok, window: int, key_bias=None):
    """Softmax attention of each query t to the keys u with |t - u| <= window that are key_ok, and
    always to itself (so PAD queries see only themselves), in O(T * window): queries in blocks of
    `window`, each against the three key blocks around it. q, k, v [B, H, T, hd], key_ok [B, T],
    key_bias [B, T] added to the logits of key u (None: 0)."""
    b, h, t, hd = q.shape
    s = window
    nb = -(-t // s)
    extra = nb * s - t
    qb = F.pad(q, (0, 0, 0, extra)).view(b, h, nb, s, hd)
    kw = F.pad(k, (0, 0, s, extra + s)).unfold(2, 3 * s, s)  # [B, H, nb, hd, 3s]
    vw = F.pad(v, (0, 0, s, extra + s)).unfold(2, 3 * s, s).transpose(-1, -2)  # [B, H, nb, 3s, hd]
    scores = (qb @ kw).float() / math.sqrt(hd)  # [B, H, nb, s, 3s]
    query = torch.arange(nb * s, device=q.device).view(nb, s, 1)
    key = (torch.arange(nb, device=q.device) * s - s).view(nb, 1, 1) + torch.arange(3 * s, device=q.device)
    ok = F.pad(key_ok, (s, extra + s), value=False).unfold(1, 3 * s, s)[:, :, None, :]  # [B, nb, 1, 3s]
    allowed = ((query - key).abs() <= window) & ok | (query == key)
    if key_bias is not None:
        scores = scores + F.pad(key_bias.float(), (s, extra + s)).unfold(1, 3 * s, s)[:, None, :, None, :]
    probs = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
    out = probs.to(v.dtype) @ vw
    return out.reshape(b, h, nb * s, hd)[:, :, :t]


def band_attention_ref(q, k, v, key_ok, window: int, key_bias=None):
    """Test oracle for band_attention: the dense masked softmax, written out."""
    t = q.shape[2]
    pos = torch.arange(t, device=q.device)
    allowed = ((pos[:, None] - pos[None, :]).abs() <= window) & key_ok[:, None, None, :] | torch.eye(
        t, dtype=torch.bool, device=q.device)
    return _dense_attention(q, k, v, allowed, key_bias)


def full_attention(q, k, v, key_ok, key_bias=None):
    """Attention of every query to every key_ok key, and always to itself."""
    t = q.shape[2]
    allowed = key_ok[:, None, None, :] | torch.eye(t, dtype=torch.bool, device=q.device)
    mask = allowed if key_bias is None else torch.where(allowed, key_bias[:, None, None, :].to(q.dtype),
                                                         float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def full_attention_ref(q, k, v, key_ok, key_bias=None):
    """Test oracle for full_attention."""
    t = q.shape[2]
    allowed = key_ok[:, None, None, :] | torch.eye(t, dtype=torch.bool, device=q.device)
    return _dense_attention(q, k, v, allowed, key_bias)


def _dense_attention(q, k, v, allowed, key_bias):
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if key_bias is not None:
        scores = scores + key_bias.float()[:, None, None, :]
    return (scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v.float()).to(q.dtype)


# The kernels the model calls; use_reference_kernels() swaps in the plain twins the tests hold equal.
KERNELS = {"band_attention": band_attention, "full_attention": full_attention,
           "local_merge": merging.local_merge, "latent_merge": merging.latent_merge}
REFERENCE_KERNELS = {"band_attention": band_attention_ref, "full_attention": full_attention_ref,
                     "local_merge": merging.local_merge_ref, "latent_merge": merging.latent_merge_ref}


def use_reference_kernels():
    """Run models on the dense attentions and the loop merges (slow, for checks)."""
    return swapped_kernels(KERNELS, REFERENCE_KERNELS)


# --- config ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeDNAConfig:
    d_model: int = 64
    n_heads: int = 4
    ffn_dim: int = 172  # SwiGLU hidden width (the paper's sizes come out with 2752 at d_model 1024)
    local_encoder_layers: int = 4
    latent_encoder_layers: int = 2
    latent_decoder_layers: int = 1
    local_decoder_layers: int = 2
    merge_window: int = 16  # tokens never cross a block of this many bases: the longest token
    attention_window: int = 8  # local attention: keys with |t - u| <= this many token (or base) slots
    group_dim: int = 64  # grouping embedding width
    merge_grad: str = "ste"  # "ste": straight-through gradient to the grouping embedding; "none"
    compression_ratio: float = 0.5  # L / N outside pre-training
    ratio_std: float = 0.05  # pre-training draws L / N ~ Normal(compression_ratio, ratio_std) ...
    ratio_min: float = 0.4  # ... clipped to [ratio_min, ratio_max]
    ratio_max: float = 0.6
    latent_ratio: float = 0.5  # K / L of the latent merge (pass 2) and AMTM's mask count
    latent_mtr_weight: float = 0.25
    amtm_exponent: float = 2.0  # P(mask a local token) ∝ g ** -amtm_exponent
    amtm_normalize: str = "bases"  # AMTM loss: mean over masked bases, or "tokens": sum / K (eq. 7)
    proportional_attention: bool = False  # add log(size in bases) to the attention logits
    intra_token_embeddings: bool = True  # Local Decoder: add offset-in-token and token-length embeddings
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    vocab_size: int = PADDED_VOCAB_SIZE
    max_seq_len: int = 1024
    name: str = "mergedna"
    extra: dict = field(default_factory=dict, compare=False)  # provenance, never read by the model

    def __post_init__(self):
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.n_heads} heads of even width (RoPE)")
        if min(self.local_encoder_layers, self.latent_encoder_layers, self.local_decoder_layers) < 1:
            raise ValueError("the Local Encoder, Latent Encoder and Local Decoder need at least one block each")
        if self.merge_window < 1 or self.attention_window < 1:
            raise ValueError("merge_window and attention_window must be positive")
        if self.merge_grad not in ("ste", "none"):
            raise ValueError(f"merge_grad {self.merge_grad!r}: choose ste or none")
        if self.amtm_normalize not in ("bases", "tokens"):
            raise ValueError(f"amtm_normalize {self.amtm_normalize!r}: choose bases or tokens")
        for name in ("compression_ratio", "ratio_min", "ratio_max", "latent_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)} must be in (0, 1]")
        if not self.ratio_min <= self.compression_ratio <= self.ratio_max:
            raise ValueError(f"compression_ratio {self.compression_ratio} outside [{self.ratio_min}, {self.ratio_max}]")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MergeDNAConfig":
        return cls(**d)


PRESETS = {
    # the paper's model: 4 / 20 / 4 / 2 blocks, width 1024 (SwiGLU 2752 and 16 heads reproduce its
    # 51M / 253M / 51M / 25M module sizes); count it on the meta device
    "mergedna-380m": MergeDNAConfig(d_model=1024, n_heads=16, ffn_dim=2752, latent_encoder_layers=20,
                                    latent_decoder_layers=4, max_seq_len=4096, name="mergedna-380m"),
    # CPU sizes (spec §7.1's tiny config, and one four times wider)
    "mergedna-tiny": MergeDNAConfig(d_model=64, n_heads=4, ffn_dim=172, group_dim=32, name="mergedna-tiny"),
    "mergedna-small": MergeDNAConfig(d_model=128, n_heads=4, ffn_dim=344, latent_encoder_layers=4,
                                     latent_decoder_layers=2, group_dim=32, name="mergedna-small"),
}


# --- blocks ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What a block's attention needs besides x: positions [B, T] (RoPE), which keys may be
    attended [B, T], the band half-width (None: full attention), a logit bias per key [B, T]."""

    pos: torch.Tensor
    key_ok: torch.Tensor
    window: int | None
    key_bias: torch.Tensor | None = None


class RoPEAttention(CausalSelfAttention):
    """Bidirectional multi-head attention with RoPE, over a band or the whole sequence."""

    def __init__(self, d: int, n_heads: int, theta: float):
        super().__init__(d, n_heads)
        self.theta = theta

    def forward(self, x, ctx: Context):
        """-> (output [B, T, d], the keys before RoPE averaged over heads [B, T, hd], ToMe's metric)."""
        q, k, v = self.project(x)
        qr, kr = rope(q, ctx.pos, self.theta), rope(k, ctx.pos, self.theta)
        if ctx.window is None:
            out = KERNELS["full_attention"](qr, kr, v, ctx.key_ok, ctx.key_bias)
        else:
            out = KERNELS["band_attention"](qr, kr, v, ctx.key_ok, ctx.window, ctx.key_bias)
        return self.o_proj(self.merge_heads(out)), k.mean(1)


class Block(nn.Module):
    """x = x + attn(RMSNorm(x)); x = x + SwiGLU(RMSNorm(x))."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.attn = RoPEAttention(cfg.d_model, cfg.n_heads, cfg.rope_theta)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.ffn_dim)

    def attend(self, x, ctx: Context):
        out, keys = self.attn(self.attn_norm(x), ctx)
        return x + out, keys

    def feed_forward(self, x):
        return x + self.mlp(self.mlp_norm(x))

    def forward(self, x, ctx: Context):
        return self.feed_forward(self.attend(x, ctx)[0])


class GroupingEmbedding(nn.Module):
    """The lightweight embedding whose cosine similarities rank merge pairs (DTEM's decoupled
    metric): L2-normalise(Linear(RMSNorm(x)))."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.proj = nn.Linear(cfg.d_model, cfg.group_dim, bias=False)

    def forward(self, x):
        return F.normalize(self.proj(self.norm(x)).float(), dim=-1)


def token_context(cfg: MergeDNAConfig, pos, size, real, window) -> Context:
    bias = size.float().clamp_min(1).log() if cfg.proportional_attention else None
    return Context(pos, real, window, bias)


class LocalEncoder(nn.Module):
    """The learned tokenizer: base embedding, then per layer a local-window block and a merge."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.local_encoder_layers))
        self.grouping = nn.ModuleList(GroupingEmbedding(cfg) for _ in range(cfg.local_encoder_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)

    def forward(self, input_ids, ratio: float, trace: list | None = None):
        """input_ids [B, N] -> (Z_L [B, L, d], TokenState). Each row keeps round(ratio * its real
        bases) tokens. trace, if a list, receives (TokenState, target, sel) after every layer."""
        cfg = self.cfg
        tokens = TokenState.of_bases(input_ids != PAD)
        x = self.embed(input_ids)
        n_real = tokens.n_real
        plan = merging.merge_schedule(n_real - merging.target_length(n_real, ratio, cfg.merge_window), len(self.blocks))
        owed = torch.zeros_like(n_real)
        for layer, (block, grouping) in enumerate(zip(self.blocks, self.grouping)):
            x = block(x, token_context(cfg, tokens.centre, tokens.size, tokens.real, cfg.attention_window))
            wanted = plan[layer] + owed
            x, tokens, target, sel = KERNELS["local_merge"](x, grouping(x), tokens, wanted, layer % 2,
                                                            cfg.merge_window, cfg.merge_grad == "ste")
            owed = wanted - sel.sum(1)
            if trace is not None:
                trace.append((tokens, target, sel))
        return self.norm(x), tokens


class LatentBlocks(nn.Module):
    """Full-attention blocks over the local tokens, then a final norm."""

    def __init__(self, cfg: MergeDNAConfig, n_blocks: int):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(n_blocks))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)

    def forward(self, z, tokens: TokenState):
        """Z [B, L, d] -> Z' [B, L, d]; no merging."""
        ctx = token_context(self.cfg, tokens.centre, tokens.size, tokens.real, None)
        for block in self.blocks:
            z = block(z, ctx)
        return self.norm(z)


class LatentEncoder(LatentBlocks):
    """The latent blocks; in pre-training pass 2 they also ToMe-merge the tokens."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__(cfg, cfg.latent_encoder_layers)

    def forward_merging(self, z, tokens: TokenState, latent_ratio: float):
        """Z_L -> (Z'_K [B, K, d], LatentState): each block merges (between its attention and its
        MLP) an equal share of the L - K merges, K = round(latent_ratio * L) per row."""
        latent = LatentState.of_tokens(tokens)
        n_real = latent.real.sum(1)
        keep = torch.floor(n_real.double() * latent_ratio + 0.5).long().clamp(min=1).minimum(n_real)
        plan = merging.merge_schedule(n_real - keep, len(self.blocks))
        owed = torch.zeros_like(n_real)
        for i, block in enumerate(self.blocks):
            z, keys = block.attend(z, token_context(self.cfg, latent.pos, latent.size, latent.real, None))
            wanted = plan[i] + owed
            z, latent, sel = KERNELS["latent_merge"](z, keys, latent, wanted)
            owed = wanted - sel.sum(1)
            z = block.feed_forward(z)
        return self.norm(z), latent


class LatentDecoder(LatentBlocks):
    def __init__(self, cfg: MergeDNAConfig):
        super().__init__(cfg, cfg.latent_decoder_layers)


class LocalDecoder(nn.Module):
    """Unmerge to base resolution, tell a token's bases apart (offset-in-token and token-length
    embeddings; RoPE at base positions), local-window blocks, then the per-base classifier."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.intra_token_embeddings:
            self.offset_embed = nn.Embedding(cfg.merge_window, cfg.d_model)
            self.length_embed = nn.Embedding(cfg.merge_window, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.local_decoder_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, z, tokens: TokenState):
        """Ẑ_L [B, L, d] -> logits [B, N, vocab] (float32)."""
        return self.head(self.features(z, tokens)).float()

    def features(self, z, tokens: TokenState):
        """Ẑ_L [B, L, d] -> the per-base states the head reads [B, N, d] (after the final norm)."""
        x = unmerge(z, tokens.token_map)
        b, n = tokens.token_map.shape
        positions = torch.arange(n, device=x.device).expand(b, n)
        if self.cfg.intra_token_embeddings:
            top = self.cfg.merge_window - 1
            offset = (positions - tokens.start.gather(1, tokens.token_map)).clamp(0, top)
            length = (tokens.size.gather(1, tokens.token_map) - 1).clamp(0, top)
            x = x + self.offset_embed(offset) + self.length_embed(length)
        ctx = Context(positions, tokens.base_is_real(), self.cfg.attention_window)
        for block in self.blocks:
            x = block(x, ctx)
        return self.norm(x)


# --- the model --------------------------------------------------------------------------------------


def reconstruction_labels(input_ids):
    """The ids as targets where they are A, C, G or T; IGNORE_INDEX at N, PAD, [MASK] and the rest."""
    is_base = torch.isin(input_ids, torch.tensor(BASE_IDS, device=input_ids.device))
    return input_ids.masked_fill(~is_base, IGNORE_INDEX)


class MergeDNA(DNALM):
    arch = "mergedna"
    prediction_context = MASKED
    default_pooling = "mean"
    # the spec's CPU-scale recipe (peak 1e-3 at 16 x 256 bp); the paper's 1e-4 at 256 x 4,096 bp
    # is for the 380M model and, scaled down to small batches, would barely move a small one
    reference_pretraining_lr = (1e-3, 16 * 256)
    alternatives = {
        "generation": "MergeDNA is a bidirectional autoencoder and cannot generate left to right; "
                      "use a causal model such as hybridna",
    }

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        self.config = cfg
        self.local_encoder = LocalEncoder(cfg)
        self.latent_encoder = LatentEncoder(cfg)
        self.latent_decoder = LatentDecoder(cfg)
        self.local_decoder = LocalDecoder(cfg)
        self.per_sequence = False  # batch_invariant()
        self.apply(init_weights)

    # --- the passes -------------------------------------------------------------------------

    def resolve_ratio(self, ratio: float | None) -> float:
        return self.config.compression_ratio if ratio is None else ratio

    def encode(self, input_ids, ratio: float | None = None):
        """(Z'_L [B, L, d], TokenState): Local Encoder then Latent Encoder, no latent merging."""
        z, tokens = self.local_encoder(input_ids, self.resolve_ratio(ratio))
        return self.latent_encoder(z, tokens), tokens

    def decode(self, z_latent, tokens: TokenState):
        """Z'_L -> logits [B, N, vocab] through the Latent Decoder and the Local Decoder."""
        return self.local_decoder(self.latent_decoder(z_latent, tokens), tokens)

    def forward(self, input_ids, ratio: float | None = None):
        """Logits [B, N, 16]: the reconstruction of every base (which it sees) through the whole
        autoencoder at the compression ratio (default config.compression_ratio)."""
        return self._each_row(lambda ids: self.decode(*self.encode(ids, ratio)), input_ids)

    def hidden_states(self, input_ids, ratio: float | None = None):
        """[B, N, d]: every base gets its token's Latent Encoder output (the decoders are dropped)."""
        return self._each_row(lambda ids: self._hidden(*self.encode(ids, ratio)), input_ids)

    def base_features(self, input_ids, ratio: float | None = None, latent_decoder: bool = False):
        """[B, N, d] for token-level (per-base) heads: the Local Decoder's states at base
        resolution, fed by the Latent Encoder (spec A17: the Latent Decoder is skipped unless
        latent_decoder)."""
        def features(ids):
            z, tokens = self.encode(ids, ratio)
            return self.local_decoder.features(self.latent_decoder(z, tokens) if latent_decoder else z, tokens)

        return self._each_row(features, input_ids)

    @staticmethod
    def _hidden(z_latent, tokens):
        return unmerge(z_latent, tokens.token_map)

    def hidden_and_base_log_probs(self, input_ids, ratio: float | None = None):
        return self.hidden_states(input_ids, ratio), self.base_log_probs(input_ids, ratio)

    def masked_base_log_probs(self, input_ids, ratio: float | None = None):
        """log P(A, C, G, T) [B, N, 4] from one reconstruction pass over input_ids as given; where
        they hold [MASK] the prediction never saw the base."""
        return self._each_row(lambda ids: torch.log_softmax(self.decode(*self.encode(ids, ratio))[..., list(BASE_IDS)], -1),
                              input_ids)

    def base_log_probs(self, input_ids, ratio: float | None = None, batch_size: int = 64):
        """[B, N, 4]: base t's distribution from a pass over the window with base t alone replaced
        by [MASK], one pass per base (batch_size at a time); [PAD] positions get the unmasked pass's."""
        out = self.masked_base_log_probs(input_ids, ratio)
        for row, ids in enumerate(input_ids):
            positions = (ids != PAD).nonzero()[:, 0]
            for chunk in positions.split(batch_size):
                copies = ids.repeat(len(chunk), 1)
                copies[torch.arange(len(chunk)), chunk] = MASK
                out[row, chunk] = self.masked_base_log_probs(copies, ratio)[torch.arange(len(chunk)), chunk]
        return out

    def sequence_embedding(self, input_ids, pooling: str | None = None, ratio: float | None = None):
        """[B, d]. "mean" (the default): the size-weighted mean of the Latent Encoder's real tokens,
        the mean of hidden_states over the real bases; "max": the maximum over the real tokens;
        "center": hidden_states at the centre base."""
        pooling = pooling or self.default_pooling

        def pooled(ids):
            z, tokens = self.encode(ids, ratio)
            if pooling == "mean":
                weight = (tokens.size * tokens.real).to(z.dtype)[..., None]
                return (z * weight).sum(1) / weight.sum(1).clamp_min(1)
            if pooling == "max":
                return z.masked_fill(~tokens.real[..., None], float("-inf")).max(1).values
            return pool_states(self._hidden(z, tokens), pooling)

        return self._each_row(pooled, input_ids, per_position=False)

    @torch.no_grad()
    def tokenize(self, input_ids, ratio: float | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The learned segmentation: per sequence of input_ids [B, N], (starts, sizes) of its
        tokens of real bases in order (0-based base offsets; PAD excluded). Deterministic: each
        sequence runs alone with its trailing PADs cut off, at the fixed ratio (default
        config.compression_ratio)."""
        result = []
        for row in input_ids.split(1):
            _, tokens = self.local_encoder(row[:, : real_length(row)], self.resolve_ratio(ratio))
            keep = tokens.real[0]
            result.append((tokens.start[0][keep], tokens.size[0][keep]))
        return result

    def token_spans(self, input_ids, compression_ratio: float | None = None):
        """DNALM's tokenization capability: tokenize(input_ids, compression_ratio)."""
        return self.tokenize(input_ids, compression_ratio)

    # --- pre-training ---------------------------------------------------------------------------

    def pretraining_loss(self, input_ids):
        """MTR + latent_mtr_weight * latent MTR + AMTM, at one compression ratio drawn for the
        batch. Components: cross_entropy (= mtr), mtr, latent_mtr, amtm, and for the logs
        compression_ratio (the drawn L/N), tokens_per_base (L/N kept) and masked_fraction (the
        bases AMTM masked)."""
        cfg = self.config
        ratio = merging.sample_compression_ratio(cfg.compression_ratio, cfg.ratio_std, cfg.ratio_min, cfg.ratio_max)
        labels = reconstruction_labels(input_ids)
        # pass 1: merged token reconstruction
        z, tokens = self.local_encoder(input_ids, ratio)
        mtr = cross_entropy(self.decode(self.latent_encoder(z, tokens), tokens), labels)
        # pass 2: latent MTR, the Local Encoder's output detached
        z_k, latent = self.latent_encoder.forward_merging(z.detach(), tokens, cfg.latent_ratio)
        latent_mtr = cross_entropy(self.decode(unmerge(z_k, latent.latent_map), tokens), labels)
        # pass 3: adaptive masked token modelling
        masked_ids, mask, k = self.amtm_inputs(input_ids, tokens, latent)
        logits = self.decode(*self.encode(masked_ids, ratio))
        amtm = amtm_loss(logits, labels, mask, cfg.amtm_normalize, k)
        total = mtr + cfg.latent_mtr_weight * latent_mtr + amtm
        real = (input_ids != PAD).sum().clamp_min(1)
        return total, {"cross_entropy": mtr, "mtr": mtr, "latent_mtr": latent_mtr, "amtm": amtm,
                       "compression_ratio": torch.tensor(ratio),
                       "tokens_per_base": tokens.n_real.sum() / real,
                       "masked_fraction": mask.sum() / real}

    def amtm_inputs(self, input_ids, tokens: TokenState, latent: LatentState):
        """(masked ids, base mask M_N [B, N], K [B]): K = the latent token count of each row; K
        local tokens drawn without replacement with P ∝ g^-amtm_exponent; all their bases -> [MASK]."""
        probs = merging.amtm_probabilities(latent.latent_map, tokens.real, self.config.amtm_exponent)
        k = latent.real.sum(1)
        token_mask = merging.sample_without_replacement(probs, k)
        mask = token_mask.gather(1, tokens.token_map) & (input_ids != PAD)
        return input_ids.masked_fill(mask, MASK), mask, token_mask.sum(1)

    def validation_loss(self, input_ids):
        """(summed MTR cross-entropy at the fixed ratio, bases counted): N and PAD excluded."""
        labels = reconstruction_labels(input_ids).flatten()
        total = F.cross_entropy(self(input_ids).flatten(0, 1), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total, (labels != IGNORE_INDEX).sum()

    # --- bookkeeping ----------------------------------------------------------------------------

    def module_parameter_counts(self) -> dict[str, int]:
        """The paper's four modules; the base embedding counts in the Local Encoder, the
        offset/length embeddings and the output head in the Local Decoder (they sum to the total)."""
        return {name: sum(p.numel() for p in getattr(self, name).parameters())
                for name in ("local_encoder", "latent_encoder", "latent_decoder", "local_decoder")}

    def lora_targets(self):
        """The spec's choice (§4.2): the attention projections of the Local and Latent Encoder
        blocks; the grouping projections and the decoders (dropped downstream) stay frozen."""
        return [name for name, module in self.named_modules()
                if name.startswith(("local_encoder.blocks.", "latent_encoder.blocks."))
                and name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")
                and isinstance(module, nn.Linear)]

    def shard_units(self):
        stacks = (self.local_encoder, self.latent_encoder, self.latent_decoder, self.local_decoder)
        return [block for stack in stacks for block in stack.blocks]

    def optimizer_groups(self, weight_decay: float):
        """AdamW groups: no decay on norm weights and embeddings."""
        decay, no_decay = [], []
        for module in self.modules():
            for _, p in module.named_parameters(recurse=False):
                (no_decay if isinstance(module, (RMSNorm, nn.Embedding)) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def batch_invariant(self, enabled: bool = True) -> "MergeDNA":
        """Run each sequence alone, its trailing PADs cut off (their outputs are 0), so its outputs
        are bit-identical whatever its batch mates and padding; returns self."""
        self.per_sequence = enabled
        return self

    @classmethod
    def reference_kernels(cls):
        return use_reference_kernels()

    def _each_row(self, fn, input_ids, per_position: bool = True):
        """fn(input_ids), or with batch_invariant fn on each row alone without its trailing PADs,
        per-position outputs zero-padded back to the row length."""
        if not self.per_sequence:
            return fn(input_ids)
        n = input_ids.shape[1]
        rows = []
        for row in input_ids.split(1):
            out = fn(row[:, : real_length(row)])
            outs = out if isinstance(out, tuple) else (out,)
            if per_position:
                outs = tuple(F.pad(o, (0, 0) * (o.dim() - 2) + (0, n - o.shape[1])) for o in outs)
            rows.append(outs)
        joined = tuple(torch.cat(parts) for parts in zip(*rows))
        return joined if isinstance(out, tuple) else joined[0]


def real_length(row: torch.Tensor) -> int:
    """The length of row [1, N] without its trailing PADs (at least 1)."""
    real = (row[0] != PAD).nonzero()
    return int(real[-1]) + 1 if len(real) else 1


def cross_entropy(logits, labels):
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def amtm_loss(logits, labels, mask, normalize: str = "bases", k: torch.Tensor | None = None):
    """Cross-entropy of the masked bases (labels IGNORE_INDEX elsewhere): their mean ("bases"), or
    their sum over the number of masked tokens K ("tokens", the paper's eq. 7)."""
    targets = labels.masked_fill(~mask, IGNORE_INDEX).flatten()
    total = F.cross_entropy(logits.flatten(0, 1), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    if normalize == "tokens":
        return total / k.sum().clamp_min(1)
    return total / (targets != IGNORE_INDEX).sum().clamp_min(1)


def init_weights(module: nn.Module, std: float = 0.02):
    """N(0, 0.02) for linear and embedding weights; norms keep their ones."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
