"""Generating DNA from any causal DNALM: beam search and sampling, through the model's inference
cache (DNALM.generation_prefix / allocate_cache / prefill / step / reorder_cache).

- Decoding emits A, C, G and T only: at each position the model's logits of the four bases are
  renormalised over them (log-softmax of those four), as regLM does; every other token, N and
  the special tokens included, is never produced.
- The length is fixed: every sequence has exactly `length` bases; there is no end token.
- One cached step per token: the prompt runs through prefill() once, in one parallel pass, and
  each base after the first costs one step() over all rows at once (constant cost per token for
  Mamba2 layers).
- A sequence's log_likelihood is the sum of its bases' log-probabilities under that
  ACGT-renormalised distribution given the prompt (with no temperature, top-k or top-p applied),
  in float64.
- Beam search with width B keeps the B best partial sequences by total log-probability at every
  position (no length penalty, which a fixed length makes moot) and returns the final B, best
  first (fewer when 4^length < B). Width 1 is greedy decoding.
- Sampling draws each base from the renormalised distribution, tempered (log-probs / T),
  restricted to the top k bases and/or the smallest set of bases whose probability reaches p
  (always the most likely one), and renormalised; the draws come from a torch.Generator on the
  CPU, so a seed gives the same sequences on any device (for the same batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .interface import DNALM, require
from .tokenizer import BASE_IDS, decode

Progress = Callable[[int], None]  # called with the number of bases just generated


@dataclass
class Generated:
    """Generated sequences: ids [N, length] of A/C/G/T and their log-likelihoods [N] (float64)."""

    ids: torch.Tensor
    log_likelihood: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def sequences(self) -> list[str]:
        return [decode(row) for row in self.ids.cpu()]


def base_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Logits [..., vocab] -> log P(A, C, G, T) [..., 4] renormalised over the four bases, float64."""
    return torch.log_softmax(logits[..., list(BASE_IDS)].double(), dim=-1)


def _device(model: DNALM) -> torch.device:
    return next(model.parameters()).device


def _start(model: DNALM, prompt_ids: torch.Tensor, rows: int):
    """(cache with `rows` copies of the prompt's state, the first base's logits [rows, vocab])."""
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1).to(_device(model))
    tokens = model.generation_prefix(prompt)
    cache = model.allocate_cache(1)
    logits = model.prefill(tokens, cache)[:, -1]
    if rows != 1:
        cache = model.reorder_cache(cache, torch.zeros(rows, dtype=torch.long))
        logits = logits.expand(rows, -1)
    return cache, logits


def _check(model: DNALM, length: int):
    require(model, "generation", "generation")
    if length < 1:
        raise ValueError(f"length {length}: must be at least 1")


@torch.inference_mode()
def beam_search(model: DNALM, prompt_ids: torch.Tensor, length: int, beam_width: int,
                progress: Progress | None = None) -> Generated:
    """The beam_width best sequences of `length` bases after the prompt (prompt token ids then
    bases, 1-D, possibly empty) by total log-probability, best first."""
    _check(model, length)
    if beam_width < 1:
        raise ValueError(f"beam width {beam_width}: must be at least 1")
    base_ids = torch.tensor(BASE_IDS, device=_device(model))
    cache, logits = _start(model, prompt_ids, 1)
    scores = torch.zeros(1, dtype=torch.float64, device=logits.device)
    ids = torch.empty(1, 0, dtype=torch.long, device=logits.device)
    for position in range(length):
        candidates = (scores[:, None] + base_log_probs(logits)).flatten()  # [beams * 4]
        top = candidates.topk(min(beam_width, candidates.numel()))
        beams, bases = top.indices // 4, top.indices % 4
        scores = top.values
        ids = torch.cat([ids[beams], base_ids[bases][:, None]], dim=1)
        if progress is not None:
            progress(len(beams))
        if position + 1 < length:
            cache = model.reorder_cache(cache, beams)
            logits = model.step(base_ids[bases], cache)
    return Generated(ids.cpu(), scores.cpu())


def greedy(model: DNALM, prompt_ids: torch.Tensor, length: int) -> Generated:
    """The most likely base at every position in turn: beam search of width 1."""
    return beam_search(model, prompt_ids, length, 1)


def sampling_log_probs(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None) -> torch.Tensor:
    """The distribution to draw from: log_probs [..., 4] tempered, cut to the top k and to the
    nucleus of mass top_p (the most likely base always stays), renormalised."""
    if not temperature > 0:
        raise ValueError(f"temperature {temperature}: must be positive")
    scaled = torch.log_softmax(log_probs / temperature, dim=-1)
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top-k {top_k}: must be at least 1")
        if top_k < scaled.shape[-1]:
            kth = scaled.topk(top_k, dim=-1).values[..., -1:]
            scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top-p {top_p}: must be in (0, 1]")
        ordered, order = scaled.sort(dim=-1, descending=True)
        mass_before = ordered.exp().cumsum(-1) - ordered.exp()
        drop = torch.zeros_like(scaled, dtype=torch.bool).scatter(-1, order, mass_before >= top_p)
        scaled = scaled.masked_fill(drop, -math.inf)
    return torch.log_softmax(scaled, dim=-1)


@torch.inference_mode()
def sample(model: DNALM, prompt_ids: torch.Tensor, length: int, n: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           batch_size: int | None = None, progress: Progress | None = None) -> Generated:
    """n sequences of `length` bases drawn after the prompt, in the order drawn; batch_size rows
    at a time (default: all n)."""
    _check(model, length)
    if n < 1:
        raise ValueError(f"n {n}: must be at least 1")
    sampling_log_probs(torch.zeros(4), temperature, top_k, top_p)  # check the settings up front
    batch_size = batch_size or n
    base_ids = torch.tensor(BASE_IDS, device=_device(model))
    all_ids, all_ll = [], []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        cache, logits = _start(model, prompt_ids, rows)
        ll = torch.zeros(rows, dtype=torch.float64)
        chosen = []
        for position in range(length):
            log_probs = base_log_probs(logits).cpu()
            draw = sampling_log_probs(log_probs, temperature, top_k, top_p).exp()
            bases = torch.multinomial(draw, 1, generator=generator)[:, 0]
            ll += log_probs.gather(1, bases[:, None])[:, 0]
            chosen.append(bases)
            if progress is not None:
                progress(rows)
            if position + 1 < length:
                logits = model.step(base_ids[bases.to(base_ids.device)], cache)
        all_ids.append(torch.tensor(BASE_IDS)[torch.stack(chosen, dim=1)])
        all_ll.append(ll)
    return Generated(torch.cat(all_ids), torch.cat(all_ll))


@torch.inference_mode()
def sequence_log_likelihood(model: DNALM, prompt_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log_likelihood [N] of base ids [N, L] after the same prompt, from one full (uncached) pass:
    the sum of the ACGT-renormalised log-probabilities of the bases."""
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1).to(_device(model))
    ids = ids.to(_device(model))
    logits = model.prompted_logits(prompt.expand(ids.shape[0], -1), ids)
    index = torch.searchsorted(torch.tensor(BASE_IDS, device=ids.device), ids)
    return base_log_probs(logits).gather(-1, index[..., None])[..., 0].sum(-1).cpu()
