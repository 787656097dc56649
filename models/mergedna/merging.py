"""Token merging for MergeDNA: the learned tokenizer's local merge, the latent ToMe merge of
pre-training pass 2, unmerge and pooling, the compression schedule and AMTM's mask sampling.

Token state. A sequence of N bases is cut into T tokens, each a run of adjacent bases
[start, start + size), in genomic order. The paper's source matrix S (T x N, S[t, j] = 1 when
base j belongs to token t) is never built: it is kept as token_map [N] (S[t, j] = token_map[j] == t)
beside start [T] and size [T]; unmerge (S^T Z) is a gather, pooling (diag(1/size) S X) a
scatter-add. source_matrix() builds the dense S for tests only.

Rows of a batch keep different numbers of tokens, so the token axis is as long as the longest
row; a row's slots past its last token are empty (size 0). PAD bases are tokens of their own
(size 1, real False) that never merge and that no real token attends to.

Local merge (one per Local Encoder layer, after the block; spec section 1.4):
- only adjacent tokens merge, and never across a merge block of `block` bases counted from the
  row's first real base, so no token is longer than `block` (16);
- ToMe's bipartite split in token order: tokens whose index has the layer's parity (A) may be
  merged into a neighbour (B, the other parity), so a B token can absorb its left and its right
  neighbour and no chains form;
- each A token scores its two neighbours by the cosine of their grouping embeddings and keeps the
  better (ties: the left one); the layer's budget of merges is ranked over the whole sequence
  (stable: ties go to the lower position), not given out per window;
- a merged token is the size-weighted average of its parts; an absorbed token's weight is
  size * gamma with gamma = 1 + s - stopgrad(s) (s its pair score): exactly 1 in the forward pass,
  while the loss's gradient reaches the grouping embedding (straight-through).

Latent merge (in every Latent Encoder block between attention and MLP, pass 2 only): plain ToMe
bipartite soft matching over the whole sequence, even slots into their most similar odd slot by
the cosine of the head-averaged attention keys; groups need not be contiguous.

Every fast function here has a plain loop twin (*_ref) that the tests hold equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


# --- state -------------------------------------------------------------------------------------


@dataclass
class TokenState:
    """The segmentation of a batch of sequences into tokens (the sparse source matrix S)."""

    start: torch.Tensor  # [B, T] long: the first base of each token
    size: torch.Tensor  # [B, T] long: bases in each token; 0 for an empty slot
    real: torch.Tensor  # [B, T] bool: made of real bases (not a PAD token, not an empty slot)
    token_map: torch.Tensor  # [B, N] long: the token of each base
    origin: torch.Tensor  # [B] long: the row's first real base; merge blocks are counted from it

    @classmethod
    def of_bases(cls, real_bases: torch.Tensor) -> "TokenState":
        """One token per base; real_bases [B, N] is False at PAD."""
        b, n = real_bases.shape
        positions = torch.arange(n, device=real_bases.device).expand(b, n)
        return cls(positions.clone(), torch.ones_like(positions), real_bases.clone(), positions.clone(),
                   real_bases.long().argmax(1))

    @property
    def centre(self) -> torch.Tensor:
        """[B, T] float: each token's centre base coordinate, (start + end - 1) / 2 (RoPE position)."""
        return self.start.to(torch.float64) + (self.size.to(torch.float64) - 1) / 2

    @property
    def n_real(self) -> torch.Tensor:
        return self.real.sum(1)

    def block(self, block: int) -> torch.Tensor:
        return torch.div(self.start - self.origin[:, None], block, rounding_mode="floor")

    def base_is_real(self) -> torch.Tensor:
        return self.real.gather(1, self.token_map)


@dataclass
class LatentState:
    """Latent groups of local tokens during the Latent Encoder's ToMe merging (pass 2)."""

    pos: torch.Tensor  # [B, K] float64: the group's mean base coordinate (RoPE position)
    size: torch.Tensor  # [B, K] long: bases in the group (the merge weight)
    count: torch.Tensor  # [B, K] long: local tokens in the group (AMTM's g); 0 for an empty slot
    real: torch.Tensor  # [B, K] bool
    latent_map: torch.Tensor  # [B, L] long: the latent group of each local token (the sparse S')

    @classmethod
    def of_tokens(cls, tokens: TokenState) -> "LatentState":
        b, t = tokens.size.shape
        return cls(tokens.centre, tokens.size.clone(), (tokens.size > 0).long(), tokens.real.clone(),
                   torch.arange(t, device=tokens.size.device).expand(b, t).clone())


# --- the compression schedule ------------------------------------------------------------------


def sample_compression_ratio(mean: float = 0.5, std: float = 0.05, low: float = 0.4, high: float = 0.6,
                             generator: torch.Generator | None = None) -> float:
    """A training iteration's L/N: Normal(mean, std) clipped to [low, high] (one draw per batch)."""
    return float((mean + std * torch.randn((), generator=generator)).clamp(low, high))


def target_length(n_real: torch.Tensor, ratio: float, block: int) -> torch.Tensor:
    """Tokens each row keeps: round(ratio * n_real), at least one per merge block the row spans
    (the fewest possible) and at most n_real."""
    wanted = torch.floor(n_real.double() * ratio + 0.5).long()
    fewest = torch.div(n_real + block - 1, block, rounding_mode="floor")
    return torch.maximum(torch.minimum(wanted, n_real), fewest)


def merge_schedule(total: torch.Tensor, steps: int) -> torch.Tensor:
    """[steps, B] merges per step: total // steps each, the remainder in the last step (ToMe's
    constant schedule)."""
    each = torch.div(total, steps, rounding_mode="floor")
    plan = each.expand(steps, -1).clone()
    plan[-1] += total - each * steps
    return plan


# --- unmerge, pool, S ---------------------------------------------------------------------------


def unmerge(z: torch.Tensor, token_map: torch.Tensor) -> torch.Tensor:
    """S^T Z: z [B, T, d], token_map [B, N] -> [B, N, d], every base gets its token's vector."""
    return z.gather(1, token_map[..., None].expand(-1, -1, z.shape[-1]))


def pool(x: torch.Tensor, token_map: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """diag(1/size) S X: x [B, N, d] -> [B, n_tokens, d], each token the mean of its bases."""
    index = token_map[..., None].expand(-1, -1, x.shape[-1])
    total = x.new_zeros(x.shape[0], n_tokens, x.shape[-1]).scatter_add(1, index, x)
    count = x.new_zeros(x.shape[0], n_tokens).scatter_add(1, token_map, torch.ones_like(token_map, dtype=x.dtype))
    return total / count.clamp_min(1)[..., None]


def source_matrix(token_map: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """The dense S [B, n_tokens, N] (for tests on short sequences only)."""
    return F.one_hot(token_map, n_tokens).transpose(1, 2).float()


# --- the shared merge arithmetic ----------------------------------------------------------------


def select_top(score: torch.Tensor, merges: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: the merges[b] best-scoring tokens of each row (ties: the lower position),
    never one scored -inf."""
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    positions = torch.arange(score.shape[1], device=score.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return (rank < merges[:, None]) & (score > NEG_INF)


def assignment(sel: torch.Tensor, dst: torch.Tensor, occupied: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(target [B, T]: the slot each token lands in, the new token count T'). Kept tokens keep
    their order; a selected token lands in its dst's slot; empty slots go to slot T', a dump
    dropped afterwards."""
    keep = occupied & ~sel
    slot = keep.cumsum(1) - 1
    n_new = int(keep.sum(1).max()) if keep.numel() else 0
    target = torch.where(keep, slot, n_new)
    return torch.where(sel, slot.gather(1, dst), target), n_new


def weighted_merge(x: torch.Tensor, target: torch.Tensor, n_new: int, weight: torch.Tensor, sel: torch.Tensor,
                   keep: torch.Tensor) -> torch.Tensor:
    """x [B, T, d] -> [B, n_new, d]: each new token the weight-averaged mean of the tokens landing
    in it (in float32); a token that absorbed nothing passes through unchanged; empty slots are 0."""
    b, t, d = x.shape
    index = target[..., None].expand(-1, -1, d)
    total = x.new_zeros(b, n_new + 1, d, dtype=torch.float32).scatter_add(1, index, weight[..., None] * x.float())
    mass = weight.new_zeros(b, n_new + 1).scatter_add(1, target, weight)
    merged = total / mass.clamp_min(torch.finfo(torch.float32).tiny)[..., None]
    dump = torch.full_like(target, n_new)
    source = torch.zeros(b, n_new + 1, dtype=torch.long, device=x.device).scatter_(
        1, torch.where(keep, target, dump), torch.arange(t, device=x.device).expand(b, t))
    grew = torch.zeros(b, n_new + 1, dtype=torch.bool, device=x.device).scatter_(
        1, torch.where(sel, target, dump), True)
    occupied = torch.zeros(b, n_new + 1, dtype=torch.bool, device=x.device).scatter_(
        1, torch.where(keep, target, dump), True)
    plain = x.gather(1, source[..., None].expand(-1, -1, d))
    out = torch.where(grew[..., None], merged.to(x.dtype), plain).masked_fill(~occupied[..., None], 0)
    return out[:, :n_new]


# --- local merge --------------------------------------------------------------------------------


def local_candidates(g: torch.Tensor, tokens: TokenState, parity: int, block: int):
    """(score [B, T], dst [B, T]): for each A token (index parity == parity) the cosine of its
    better neighbour in the same merge block and that neighbour; -inf where it has none. g is the
    L2-normalised grouping embedding [B, T, d_g]."""
    t = g.shape[1]
    blocks = tokens.block(block)
    allowed = tokens.real[:, :-1] & tokens.real[:, 1:] & (blocks[:, :-1] == blocks[:, 1:])
    pair = (g[:, :-1] * g[:, 1:]).sum(-1).masked_fill(~allowed, NEG_INF)  # pair (i, i+1)
    left, right = F.pad(pair, (1, 0), value=NEG_INF), F.pad(pair, (0, 1), value=NEG_INF)
    to_right = right > left
    index = torch.arange(t, device=g.device)
    dst = (index + torch.where(to_right, 1, -1)).clamp(0, max(t - 1, 0))
    score = torch.where(to_right, right, left).masked_fill((index % 2 != parity)[None], NEG_INF)
    return score, dst


def merge_local_tokens(x: torch.Tensor, tokens: TokenState, sel: torch.Tensor, dst: torch.Tensor,
                       gamma: torch.Tensor):
    """Apply a local merge plan: (x', tokens', target [B, T] the new token of each old one)."""
    occupied = tokens.size > 0
    keep = occupied & ~sel
    target, n_new = assignment(sel, dst, occupied)
    b, n = tokens.token_map.shape
    x_new = weighted_merge(x, target, n_new, tokens.size.float() * gamma, sel, keep)
    size = tokens.size.new_zeros(b, n_new + 1).scatter_add(1, target, tokens.size)[:, :n_new]
    start = tokens.start.new_full((b, n_new + 1), n).scatter_reduce(1, target, tokens.start, "amin")[:, :n_new]
    real = tokens.size.new_zeros(b, n_new + 1).scatter_reduce(1, target, tokens.real.long(), "amax")[:, :n_new]
    return x_new, TokenState(start, size, real.bool(), target.gather(1, tokens.token_map), tokens.origin), target


def local_merge(x, g, tokens: TokenState, merges: torch.Tensor, parity: int, block: int,
                straight_through: bool = True):
    """One local merge step. x [B, T, d], g [B, T, d_g] the normalised grouping embedding,
    merges [B] how many tokens each row should lose. Returns (x', tokens', target, sel)."""
    score, dst = local_candidates(g, tokens, parity, block)
    sel = select_top(score, merges)
    gate = score.masked_fill(~sel, 0.0)
    gamma = 1 + (gate - gate.detach()) if straight_through else torch.ones_like(gate)
    x_new, tokens_new, target = merge_local_tokens(x, tokens, sel, dst, gamma)
    return x_new, tokens_new, target, sel


def local_merge_ref(x, g, tokens: TokenState, merges: torch.Tensor, parity: int, block: int,
                    straight_through: bool = True):
    """Test oracle for local_merge, one row and one pair at a time."""
    b_count, t_count, d = x.shape
    n = tokens.token_map.shape[1]
    rows = []
    for b in range(b_count):
        start, size, real = tokens.start[b].tolist(), tokens.size[b].tolist(), tokens.real[b].tolist()
        origin = int(tokens.origin[b])
        candidates = []
        for a in range(t_count):
            if a % 2 != parity or not real[a]:
                continue
            best = None
            for c in (a - 1, a + 1):  # left first: a tie keeps the left neighbour
                if 0 <= c < t_count and real[c] and (start[a] - origin) // block == (start[c] - origin) // block:
                    s = (g[b, a] * g[b, c]).sum()
                    if best is None or s > best[0]:
                        best = (s, c)
            if best is not None:
                candidates.append((best[0], a, best[1]))
        candidates.sort(key=lambda e: (-float(e[0].detach()), e[1]))
        chosen = {a: (s, c) for s, a, c in candidates[: int(merges[b])]}
        kept = [t for t in range(t_count) if size[t] > 0 and t not in chosen]
        new_of = {t: i for i, t in enumerate(kept)}
        target = [new_of[t] if t in new_of else (new_of[chosen[t][1]] if t in chosen else None)
                  for t in range(t_count)]  # None: an empty slot
        xs, starts, sizes, reals = [], [], [], []
        for t in kept:
            absorbed = [a for a, (_, c) in chosen.items() if c == t]
            if absorbed:
                total, mass = size[t] * x[b, t].float(), torch.tensor(float(size[t]))
                for a in absorbed:
                    s = chosen[a][0]
                    w = size[a] * ((1 + (s - s.detach())) if straight_through else 1.0)
                    total, mass = total + w * x[b, a].float(), mass + w
                xs.append((total / mass).to(x.dtype))
            else:
                xs.append(x[b, t])
            members = [t] + absorbed
            starts.append(min(start[m] for m in members))
            sizes.append(sum(size[m] for m in members))
            reals.append(real[t])
        token_map = [target[j] for j in tokens.token_map[b].tolist()]
        rows.append((xs, starts, sizes, reals, token_map, target, [t in chosen for t in range(t_count)]))
    width = max(len(r[0]) for r in rows)
    pad = lambda values, fill: values + [fill] * (width - len(values))  # noqa: E731
    device = x.device
    x_new = torch.stack([torch.stack(pad(r[0], x.new_zeros(d))) for r in rows])
    new = TokenState(torch.tensor([pad(r[1], n) for r in rows], device=device),
                     torch.tensor([pad(r[2], 0) for r in rows], device=device),
                     torch.tensor([pad(r[3], False) for r in rows], device=device),
                     torch.tensor([r[4] for r in rows], device=device), tokens.origin)
    target = torch.tensor([[width if v is None else v for v in r[5]] for r in rows], device=device)
    return x_new, new, target, torch.tensor([r[6] for r in rows], device=device)


# --- latent merge (pass 2) ----------------------------------------------------------------------


def latent_candidates(keys: torch.Tensor, real: torch.Tensor):
    """(score [B, K], dst [B, K]): ToMe bipartite matching, each even slot's most similar odd slot
    (cosine of keys [B, K, d_k]; ties: the lower slot); -inf for odd slots and where there is none."""
    b, k = real.shape
    score = keys.new_full((b, k), NEG_INF, dtype=torch.float32)
    dst = torch.zeros(b, k, dtype=torch.long, device=keys.device)
    if k < 2:
        return score, dst
    unit = F.normalize(keys.float(), dim=-1)
    sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
    sim = sim.masked_fill(~(real[:, 0::2, None] & real[:, None, 1::2]), NEG_INF)
    best = sim.argmax(-1)
    score[:, 0::2] = sim.gather(-1, best[..., None])[..., 0]
    dst[:, 0::2] = 2 * best + 1
    return score, dst


def merge_latent_tokens(x: torch.Tensor, latent: LatentState, sel: torch.Tensor, dst: torch.Tensor):
    occupied = latent.count > 0
    keep = occupied & ~sel
    target, n_new = assignment(sel, dst, occupied)
    b = x.shape[0]
    x_new = weighted_merge(x, target, n_new, latent.size.float(), sel, keep)
    size = latent.size.new_zeros(b, n_new + 1).scatter_add(1, target, latent.size)
    weighted_pos = latent.pos.new_zeros(b, n_new + 1).scatter_add(1, target, latent.pos * latent.size)
    count = latent.count.new_zeros(b, n_new + 1).scatter_add(1, target, latent.count)[:, :n_new]
    real = latent.count.new_zeros(b, n_new + 1).scatter_reduce(1, target, latent.real.long(), "amax")[:, :n_new]
    pos = (weighted_pos / size.clamp_min(1))[:, :n_new]
    latent_map = target.gather(1, latent.latent_map).clamp(max=max(n_new - 1, 0))
    return x_new, LatentState(pos, size[:, :n_new], count, real.bool(), latent_map)


def latent_merge(x: torch.Tensor, keys: torch.Tensor, latent: LatentState, merges: torch.Tensor):
    """One ToMe step of the Latent Encoder (pass 2): (x', latent', sel)."""
    score, dst = latent_candidates(keys, latent.real)
    sel = select_top(score, merges)
    x_new, latent_new = merge_latent_tokens(x, latent, sel, dst)
    return x_new, latent_new, sel


def latent_merge_ref(x: torch.Tensor, keys: torch.Tensor, latent: LatentState, merges: torch.Tensor):
    """Test oracle for latent_merge, one row and one pair at a time."""
    b_count, k_count, d = x.shape
    rows = []
    for b in range(b_count):
        real, size, count = latent.real[b].tolist(), latent.size[b].tolist(), latent.count[b].tolist()
        unit = F.normalize(keys[b].float(), dim=-1)
        candidates = []
        for a in range(0, k_count, 2):
            best = None
            for c in range(1, k_count, 2):
                if real[a] and real[c]:
                    s = float(unit[a] @ unit[c])
                    if best is None or s > best[0]:
                        best = (s, c)
            if best is not None:
                candidates.append((best[0], a, best[1]))
        candidates.sort(key=lambda e: (-e[0], e[1]))
        chosen = {a: c for _, a, c in candidates[: int(merges[b])]}
        kept = [t for t in range(k_count) if count[t] > 0 and t not in chosen]
        new_of = {t: i for i, t in enumerate(kept)}
        target = [new_of[t] if t in new_of else (new_of[chosen[t]] if t in chosen else None)
                  for t in range(k_count)]  # None: an empty slot
        xs, poss, sizes, counts, reals = [], [], [], [], []
        for t in kept:
            members = [t] + [a for a, c in chosen.items() if c == t]
            if len(members) > 1:
                mass = sum(size[m] for m in members)
                xs.append((sum(size[m] * x[b, m].float() for m in members) / mass).to(x.dtype))
            else:
                xs.append(x[b, t])
            poss.append(sum(float(latent.pos[b, m]) * size[m] for m in members) / max(sum(size[m] for m in members), 1))
            sizes.append(sum(size[m] for m in members))
            counts.append(sum(count[m] for m in members))
            reals.append(real[t])
        rows.append((xs, poss, sizes, counts, reals, [target[j] for j in latent.latent_map[b].tolist()],
                     [t in chosen for t in range(k_count)]))
    width = max(len(r[0]) for r in rows)
    pad = lambda values, fill: values + [fill] * (width - len(values))  # noqa: E731
    device = x.device
    x_new = torch.stack([torch.stack(pad(r[0], x.new_zeros(d))) for r in rows])
    sel = torch.tensor([r[6] for r in rows], device=device)
    return x_new, LatentState(torch.tensor([pad(r[1], 0.0) for r in rows], dtype=torch.float64, device=device),
                              torch.tensor([pad(r[2], 0) for r in rows], device=device),
                              torch.tensor([pad(r[3], 0) for r in rows], device=device),
                              torch.tensor([pad(r[4], False) for r in rows], device=device),
                              torch.tensor([[width - 1 if v is None else v for v in r[5]] for r in rows],
                                           device=device)), sel


# --- adaptive masking (AMTM, pass 3) ------------------------------------------------------------


def amtm_probabilities(latent_map: torch.Tensor, real: torch.Tensor, exponent: float = 2.0) -> torch.Tensor:
    """P_L [B, L]: each real local token j in latent group i gets P ∝ 1/g_i^exponent (g_i the
    group's local token count; the paper's w_i / g_i with w_i = 1/g_i at exponent 2); 0 for PAD
    tokens and empty slots; rows sum to 1."""
    count = torch.zeros(real.shape, dtype=torch.float64, device=real.device).scatter_add(
        1, latent_map, real.double())
    g = count.gather(1, latent_map).clamp_min(1)
    weight = torch.where(real, g.pow(-exponent), 0.0)
    return weight / weight.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def sample_without_replacement(p: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None = None):
    """[B, L] bool: min(k[b], #nonzero) distinct tokens per row, drawn one after another without
    replacement with probabilities p (Gumbel top-k, which is that sequential draw)."""
    u = torch.rand(p.shape, generator=generator, dtype=torch.float64, device=p.device).clamp_min(1e-300)
    keys = (p.log() - (-u.log()).log()).masked_fill(p <= 0, NEG_INF)
    return select_top(keys, k)
