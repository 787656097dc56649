"""JanusDNA, top to bottom.

Two independent stacks read the sequence left-to-right (forward stream F) and right-to-left
(backward stream B). Each layer is, per direction, a pre-norm residual pair

    x = x + mixer(RMSNorm(x));  x = x + ffn(RMSNorm(x))

where the mixer is a Jamba-style Mamba block (or causal attention in the optional mid layer) and
the ffn is a SwiGLU MLP or, on every other layer, a top-2 sparse mixture of SwiGLU experts. One
final attention layer runs over [F; flip(B)] with the Janus mask so that, after folding the 2L
positions back to L, position t is predicted from every token except token t itself. Labels are
therefore the input ids, unshifted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dnalm.conv import causal_conv_silu, causal_conv_silu_ref
from dnalm.interface import ALL_BUT_SELF, DNALM, IGNORE_INDEX, base_labels, pool
from dnalm.layers import CausalSelfAttention, RMSNorm, SwiGLU, swapped_kernels
from dnalm.tokenizer import BASE_IDS, PADDED_VOCAB_SIZE

from . import attention, scan

# The sequence-mixing kernels the model calls. The fast ones are the default; the plain reference
# implementations they are tested against can be swapped in with use_reference_kernels().
KERNELS = {"causal_conv": causal_conv_silu, "selective_scan": scan.selective_scan,
           "janus_attention": attention.janus_attention}


def use_reference_kernels():
    """Run models on the plain conv, the sequential scan and the dense masked Janus attention
    (slow, for checks)."""
    return swapped_kernels(KERNELS, {"causal_conv": causal_conv_silu_ref, "selective_scan": scan.selective_scan_ref,
                                     "janus_attention": attention.janus_attention_ref})


@dataclass(frozen=True)
class JanusDNAConfig:
    d_model: int = 32
    n_layers: int = 8
    vocab_size: int = PADDED_VOCAB_SIZE
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(d_model / 16)
    ffn_dim: int = 0  # 0: 4 * d_model
    n_experts: int = 16
    experts_per_token: int = 2
    moe_period: int = 2  # layer i is MoE when i % moe_period == moe_offset
    moe_offset: int = 1
    mid_attention_layers: tuple[int, ...] = ()  # layers whose mixer is causal attention
    n_heads: int = 4
    fusion_attn_dim: int = 64  # the original zero-pads the fusion heads to this total width
    final_mlp: bool = False
    rms_norm_eps: float = 1e-6
    router_aux_loss_coef: float = 0.2
    max_seq_len: int = 1024
    name: str = "janusdna"
    extra: dict = field(default_factory=dict, compare=False)  # provenance, never read by the model

    def __post_init__(self):
        object.__setattr__(self, "mid_attention_layers", tuple(self.mid_attention_layers))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.fusion_attn_dim < self.d_model or self.fusion_attn_dim % self.n_heads:
            raise ValueError(f"fusion_attn_dim {self.fusion_attn_dim} must be >= d_model and divisible by n_heads")
        if any(not 0 <= i < self.n_layers for i in self.mid_attention_layers):
            raise ValueError(f"mid_attention_layers {self.mid_attention_layers} outside 0..{self.n_layers - 1}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.d_model / 16)

    @property
    def resolved_ffn_dim(self) -> int:
        return self.ffn_dim or 4 * self.d_model

    def is_moe_layer(self, i: int) -> bool:
        return self.n_experts > 1 and i % self.moe_period == self.moe_offset

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JanusDNAConfig":
        return cls(**d)


PRESETS = {
    "janusdna-d32": JanusDNAConfig(d_model=32, fusion_attn_dim=64, name="janusdna-d32"),
    "janusdna-d32-midattn": JanusDNAConfig(
        d_model=32, fusion_attn_dim=64, mid_attention_layers=(4,), name="janusdna-d32-midattn"
    ),
    "janusdna-d72": JanusDNAConfig(d_model=72, fusion_attn_dim=128, name="janusdna-d72"),
    "janusdna-d72-midattn": JanusDNAConfig(
        d_model=72, fusion_attn_dim=128, mid_attention_layers=(4,), name="janusdna-d72-midattn"
    ),
    "janusdna-d144": JanusDNAConfig(
        d_model=144, fusion_attn_dim=256, max_seq_len=131_072, name="janusdna-d144"
    ),
}


class SparseMoE(nn.Module):
    """Dropless top-k mixture of SwiGLU experts. Router softmax in fp32; the top-k weights are
    used as they are (not renormalised), as in the original.

    The tokens routed to each expert are packed into tiles of TILE_ROWS rows (an expert's last
    tile zero-padded), and all tiles of all experts go through one batched matmul per weight.
    Every matmul therefore has the same shape whatever the batch holds, so a token's output is
    bit-identical however many tokens share its expert: a sequence's results do not depend on its
    batch mates. (A plain matmul over an expert's tokens does not promise that: BLAS picks its
    kernel, and with it the rounding, by the number of rows.)"""

    TILE_ROWS = 64

    def __init__(self, d: int, hidden: int, n_experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(d, hidden) for _ in range(n_experts))

    def route(self, x):
        """x [T, d] -> (weights [T, k] in x.dtype, expert ids [T, k], router logits [T, E])."""
        logits = self.router(x)
        weights, experts = F.softmax(logits, dim=-1, dtype=torch.float32).topk(self.top_k, dim=-1)
        return weights.to(x.dtype), experts, logits

    def forward(self, x):
        """x [B, L, d] -> (output [B, L, d], router logits [B * L, E])."""
        flat = x.reshape(-1, x.shape[-1])
        weights, experts, logits = self.route(flat)
        rows, tile_expert = self.tile_layout(experts.reshape(-1))
        packed = flat.new_zeros(len(tile_expert) * self.TILE_ROWS, flat.shape[-1])
        packed[rows] = flat.repeat_interleave(self.top_k, dim=0)
        expert_out = self.experts_on_tiles(packed.view(len(tile_expert), self.TILE_ROWS, -1), tile_expert)
        weighted = expert_out.flatten(0, 1)[rows] * weights.reshape(-1, 1)
        return weighted.view(*flat.shape[:1], self.top_k, -1).sum(1).view_as(x), logits

    def tile_layout(self, slot_expert):
        """For routing slots (token t's j-th expert at t * k + j), their rows in the packed tiles
        and each tile's expert; tiles are grouped by expert, slots kept in token order."""
        n_experts = len(self.experts)
        order = slot_expert.argsort(stable=True)
        counts = torch.bincount(slot_expert, minlength=n_experts)
        tiles = (counts + self.TILE_ROWS - 1) // self.TILE_ROWS
        first_sorted = torch.cumsum(counts, 0) - counts
        first_row = (torch.cumsum(tiles, 0) - tiles) * self.TILE_ROWS
        sorted_expert = slot_expert[order]
        sorted_rows = first_row[sorted_expert] + torch.arange(len(order), device=order.device) - first_sorted[sorted_expert]
        rows = torch.empty_like(sorted_rows).scatter_(0, order, sorted_rows)
        return rows, torch.repeat_interleave(torch.arange(n_experts, device=order.device), tiles)

    def experts_on_tiles(self, tiles, tile_expert):
        """tiles [n_tiles, TILE_ROWS, d], each through its expert's SwiGLU (one batched matmul
        per expert and weight, the weight broadcast over the expert's tiles)."""
        outputs = []
        counts = torch.bincount(tile_expert, minlength=len(self.experts)).tolist()
        for expert, x in zip(self.experts, tiles.split(counts)):
            if len(x):
                gate_up = torch.cat([expert.gate_proj.weight, expert.up_proj.weight]).t().expand(len(x), -1, -1)
                gate, up = torch.bmm(x, gate_up).chunk(2, dim=-1)
                outputs.append(torch.bmm(F.silu(gate).mul_(up), expert.down_proj.weight.t().expand(len(x), -1, -1)))
        return torch.cat(outputs)


def moe_reference(moe: SparseMoE, x):
    """Test oracle for SparseMoE.forward: every token, each of its k experts, one at a time."""
    flat = x.reshape(-1, x.shape[-1])
    weights, experts, logits = moe.route(flat)
    out = torch.zeros_like(flat)
    for t in range(flat.shape[0]):
        for slot in range(moe.top_k):
            out[t] += moe.experts[int(experts[t, slot])](flat[t]) * weights[t, slot]
    return out.view_as(x), logits


def load_balancing_loss(router_logits: list[torch.Tensor], n_experts: int, top_k: int):
    """Switch/Mixtral auxiliary loss over all MoE blocks of one direction:
    E * sum_e (fraction of routed slots to e) * (mean router probability of e).
    It equals top_k for a perfectly uniform router."""
    probs = F.softmax(torch.cat(router_logits).float(), dim=-1)
    chosen = probs.topk(top_k, dim=-1).indices
    routed_fraction = F.one_hot(chosen, n_experts).float().mean(0)  # [k, E]
    return (routed_fraction * probs.mean(0)).sum() * n_experts


class SelectiveSSM(nn.Module):
    """One direction's Mamba mixer between the (shared) in and out projections: causal depthwise
    conv, input-dependent dt/B/C (each RMS-normed, Jamba style) and the selective scan."""

    def __init__(self, cfg: JanusDNAConfig):
        super().__init__()
        d_inner, n, r = cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank
        self.dims = (r, n, n)
        self.conv1d = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d_inner, r + 2 * n, bias=False)
        self.dt_norm = RMSNorm(r, cfg.rms_norm_eps)
        self.B_norm = RMSNorm(n, cfg.rms_norm_eps)
        self.C_norm = RMSNorm(n, cfg.rms_norm_eps)
        self.dt_proj = nn.Linear(r, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, x, z):
        x = KERNELS["causal_conv"](x, self.conv1d.weight.squeeze(1), self.conv1d.bias)
        dt, B, C = self.x_proj(x).split(self.dims, dim=-1)
        A = -torch.exp(self.A_log.float())
        return KERNELS["selective_scan"](x, self.dt_proj(self.dt_norm(dt)), A, self.B_norm(B), self.C_norm(C), self.D, z,
                                         delta_softplus=True)


class JanusFusionAttention(CausalSelfAttention):
    """Attention over the 2L concatenation with the Janus mask. The original pads each head to
    fusion_attn_dim / n_heads with zeros; that only changes the softmax scale, reproduced here."""

    def __init__(self, d: int, n_heads: int, padded_dim: int):
        super().__init__(d, n_heads)
        self.scale = 1.0 / math.sqrt(padded_dim // n_heads)

    def forward(self, x):
        return self.o_proj(self.merge_heads(KERNELS["janus_attention"](*self.project(x), self.scale)))


def make_ffn(cfg: JanusDNAConfig, moe: bool) -> nn.Module:
    if moe:
        return SparseMoE(cfg.d_model, cfg.resolved_ffn_dim, cfg.n_experts, cfg.experts_per_token)
    return SwiGLU(cfg.d_model, cfg.resolved_ffn_dim)


class Block(nn.Module):
    """One direction of one layer: pre-norm residual mixer, then pre-norm residual ffn.
    Returns (x, router logits or None)."""

    def __init__(self, cfg: JanusDNAConfig, mixer: nn.Module, moe: bool):
        super().__init__()
        self.mixer_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mixer = mixer
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.ffn = make_ffn(cfg, moe)

    def ffn_residual(self, x):
        out = self.ffn(self.ffn_norm(x))
        out, router_logits = out if isinstance(out, tuple) else (out, None)
        return x + out, router_logits

    def forward(self, x):
        return self.ffn_residual(x + self.mixer(self.mixer_norm(x)))


class MambaBlock(Block):
    """A Block whose Mamba mixer borrows in_proj/out_proj from its layer: the two directions
    share them (the original's bidirectional weight tie)."""

    def forward(self, x, in_proj, out_proj):
        inner, gate = in_proj(self.mixer_norm(x)).chunk(2, dim=-1)
        return self.ffn_residual(x + out_proj(self.mixer(inner, gate)))


class MambaLayer(nn.Module):
    def __init__(self, cfg: JanusDNAConfig, moe: bool):
        super().__init__()
        self.in_proj = nn.Linear(cfg.d_model, 2 * cfg.d_inner, bias=False)
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False)
        self.fwd = MambaBlock(cfg, SelectiveSSM(cfg), moe)
        self.bwd = MambaBlock(cfg, SelectiveSSM(cfg), moe)

    def forward(self, f, b):
        f, logits_f = self.fwd(f, self.in_proj, self.out_proj)
        b, logits_b = self.bwd(b, self.in_proj, self.out_proj)
        return f, b, logits_f, logits_b


class MidAttentionLayer(nn.Module):
    """Causal attention inside each stream, with its own norms and ffn per direction."""

    def __init__(self, cfg: JanusDNAConfig, moe: bool):
        super().__init__()
        self.fwd = Block(cfg, CausalSelfAttention(cfg.d_model, cfg.n_heads), moe)
        self.bwd = Block(cfg, CausalSelfAttention(cfg.d_model, cfg.n_heads), moe)

    def forward(self, f, b):
        f, logits_f = self.fwd(f)
        b, logits_b = self.bwd(b)
        return f, b, logits_f, logits_b


class FinalMLP(nn.Module):
    """h + silu(fc2(silu(fc1(h)))) with fc1: d -> 2d and fc2: 2d -> d, both with biases, applied
    to the output of the final norm (the residual is the normed h). As the original's final_mlp
    (Linear(d, 2d), act, Linear(2d, d), act with its default hidden_act "silu"), present in its
    newer weights."""

    def __init__(self, d: int):
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, h):
        return h + F.silu(self.fc2(F.silu(self.fc1(h))))


def fold_janus(x):
    """[B, 2L, d] fusion output O -> [B, L, d]: out[t] = O[t-1] + O[L+t+1], where a missing term
    (t = 0 or t = L-1) is zero. O[t-1] has seen tokens <= t-1 and after, through the backward
    half, tokens >= t+1; O[L+t+1] the mirror image. Neither has seen token t."""
    length = x.shape[1] // 2
    fwd, bwd = x[:, :length], x[:, length:]
    return F.pad(fwd[:, :-1], (0, 0, 1, 0)) + F.pad(bwd[:, 1:], (0, 0, 0, 1))


class JanusDNA(DNALM):
    arch = "janusdna"
    prediction_context = ALL_BUT_SELF
    default_pooling = "mean"
    reference_pretraining_lr = (8e-3, 2**20)  # the JanusDNA paper: peak 8e-3 at 2^20 tokens per batch
    alternatives = {"generation": "JanusDNA predicts each base from both sides and cannot generate left to right; "
                                  "use a causal model such as hybridna"}

    def __init__(self, cfg: JanusDNAConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            (MidAttentionLayer if i in cfg.mid_attention_layers else MambaLayer)(cfg, cfg.is_moe_layer(i))
            for i in range(cfg.n_layers)
        )
        self.fusion = Block(cfg, JanusFusionAttention(cfg.d_model, cfg.n_heads, cfg.fusion_attn_dim), moe=False)
        self.norm_f = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.final_mlp = FinalMLP(cfg.d_model) if cfg.final_mlp else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_weights)

    def trunk(self, input_ids):
        """input_ids [B, L] -> (hidden [B, L, d], forward router logits, backward router logits)."""
        x = self.embed(input_ids)
        f, b = x, x.flip(1)  # the backward stream reads the same embeddings time-reversed
        router_f, router_b = [], []
        for layer in self.layers:
            f, b, logits_f, logits_b = layer(f, b)
            if logits_f is not None:
                router_f.append(logits_f)
                router_b.append(logits_b)
        fused, _ = self.fusion(torch.cat([f, b.flip(1)], dim=1))
        h = self.norm_f(fold_janus(fused))
        if self.final_mlp is not None:
            h = self.final_mlp(h)
        return h, router_f, router_b

    def hidden_states(self, input_ids):
        """Fused per-position representations [B, L, d] (after the final norm and final_mlp)."""
        return self.trunk(input_ids)[0]

    def forward(self, input_ids):
        """Logits [B, L, 16]; position t predicts token t from all the other tokens."""
        return self.lm_head(self.hidden_states(input_ids)).float()

    def hidden_states_with_aux(self, input_ids):
        """(hidden states [B, L, d], MoE auxiliary loss = coef * (LB_fwd + LB_bwd)) for training."""
        h, router_f, router_b = self.trunk(input_ids)
        cfg = self.config
        if not router_f:
            return h, h.new_zeros((), dtype=torch.float32)
        return h, cfg.router_aux_loss_coef * (
            load_balancing_loss(router_f, cfg.n_experts, cfg.experts_per_token)
            + load_balancing_loss(router_b, cfg.n_experts, cfg.experts_per_token)
        )

    def forward_with_aux(self, input_ids):
        """(logits, MoE auxiliary loss) for training."""
        h, aux = self.hidden_states_with_aux(input_ids)
        return self.lm_head(h).float(), aux

    def sequence_embedding_with_aux(self, input_ids, pooling=None):
        h, aux = self.hidden_states_with_aux(input_ids)
        return pool(h, pooling or self.default_pooling), aux

    def hidden_and_base_log_probs(self, input_ids):
        h = self.hidden_states(input_ids)
        return h, torch.log_softmax(self.lm_head(h).float()[..., list(BASE_IDS)], dim=-1)

    def pretraining_loss(self, input_ids):
        """Janus modelling: cross-entropy of every base predicted from all the others (N excluded),
        plus the MoE load-balancing loss."""
        logits, aux = self.forward_with_aux(input_ids)
        ce = F.cross_entropy(logits.flatten(0, 1), base_labels(input_ids).flatten(), ignore_index=IGNORE_INDEX)
        return ce + aux, {"cross_entropy": ce, "aux_loss": aux}

    def validation_loss(self, input_ids):
        labels = base_labels(input_ids).flatten()
        total = F.cross_entropy(self(input_ids).flatten(0, 1), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total, (labels != IGNORE_INDEX).sum()

    @classmethod
    def reference_kernels(cls):
        return use_reference_kernels()

    def num_activated_parameters(self) -> int:
        """Parameters used per token: all but the (n_experts - top_k) idle experts of each MoE block."""
        idle = 0
        for module in self.modules():
            if isinstance(module, SparseMoE):
                per_expert = sum(p.numel() for p in module.experts[0].parameters())
                idle += (len(module.experts) - module.top_k) * per_expert
        return self.num_parameters() - idle

    def shard_units(self):
        return list(self.layers)

    def optimizer_groups(self, weight_decay: float):
        """AdamW parameter groups: no decay on biases, norm weights, the embedding, A_log and D."""
        no_decay_names = {"bias", "A_log", "D"}
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                exempt = name in no_decay_names or isinstance(module, (RMSNorm, nn.Embedding))
                (no_decay if exempt else decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


def init_weights(module: nn.Module, std: float = 0.02):
    """The original's initialisation: N(0, 0.02) for linear, conv and embedding weights, zero
    biases, Xavier-uniform for attention q/k/v; norms, A_log and D keep their constructor values.
    Nothing to do on the meta device (parameter counting), where tensors hold no values."""
    if any(p.is_meta for p in module.parameters(recurse=False)):
        return
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, CausalSelfAttention):
        for proj in (module.q_proj, module.k_proj, module.v_proj):
            nn.init.xavier_uniform_(proj.weight)
