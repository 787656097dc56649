"""Classical per-base baselines for DNA language models: base frequencies and an order-k Markov
chain P(x_t | x_{t-k..t-1}), counted with numpy over rolling base-4 k-mer codes.

Bases are coded A0 C1 G2 T3 and anything else (N, IUPAC codes) -1. A k-mer code holds its most
recent base in the lowest two bits, so the code of the last j+1 bases of a longer k-mer is
`code & (4**(j+1) - 1)`, and in a [4**j, 4] table indexed by (context code, next base) the row
of a context with its oldest base dropped is `context & (4**(j-1) - 1)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_ORDER = 10  # a 4**(MAX_ORDER + 1) count array is 4M entries

_CODE_OF_BYTE = np.full(256, -1, dtype=np.int8)
for _code, _letter in enumerate(b"ACGT"):
    _CODE_OF_BYTE[_letter] = _code


def base_codes(sequence: str) -> np.ndarray:
    """DNA text -> int8 array: A0 C1 G2 T3 (either case), every other character -1."""
    return _CODE_OF_BYTE[np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)]


def kmer_codes(codes: np.ndarray, width: int) -> np.ndarray:
    """The base-4 code of the `width` bases ending at each position (int32; 4**11 fits).
    Non-ACGT bases and positions before the start contribute 0: callers only read the digits of
    bases that left_context_lengths() vouches for."""
    digits = np.maximum(codes, 0).astype(np.int32)
    out = np.zeros(len(codes), dtype=np.int32)
    for lag in range(min(width, len(codes))):
        out[lag:] += digits[: len(codes) - lag] << (2 * lag)
    return out


def left_context_lengths(codes: np.ndarray, cap: int) -> np.ndarray:
    """How many A/C/G/T bases directly precede each position, stopping at a non-ACGT base or the
    start of the sequence, capped at `cap`."""
    positions = np.arange(len(codes), dtype=np.int64)
    last_non_acgt = np.maximum.accumulate(np.where(codes < 0, positions, -1))
    lengths = np.zeros(len(codes), dtype=np.int64)
    lengths[1:] = positions[1:] - 1 - last_non_acgt[:-1]
    return np.minimum(lengths, cap)


def count_transitions(sequences: list[np.ndarray], max_order: int) -> list[np.ndarray]:
    """counts[j][c, x]: how often context c (j bases) is followed by base x, for j = 0..max_order,
    summed over the sequences. A (j+1)-mer containing a non-ACGT base is not counted."""
    counts = [np.zeros((4**j, 4), dtype=np.int64) for j in range(max_order + 1)]
    for codes in sequences:
        kmers = kmer_codes(codes, max_order + 1)
        context_lengths = left_context_lengths(codes, max_order)
        is_base = codes >= 0
        for j in range(max_order + 1):
            mask = 4 ** (j + 1) - 1
            complete = kmers[is_base & (context_lengths >= j)] & mask
            counts[j] += np.bincount(complete, minlength=mask + 1).reshape(4**j, 4)
    return counts


UNIFORM = np.full((1, 4), 0.25)  # the "order -1" table below the unigram


def interpolate(counts: np.ndarray, lower: np.ndarray, strength: float) -> np.ndarray:
    """The order-j table P_j[c, x] from the order-j counts [4**j, 4] and the order j-1 table,
    interpolated as a hierarchical Dirichlet prior:

        P_j(x | c) = (n(c, x) + strength * P_{j-1}(x | c without its oldest base)) / (n(c) + strength)

    With strength 0 this is the maximum-likelihood estimate, falling back to P_{j-1} for contexts
    never seen in training."""
    prior = lower[np.arange(len(counts)) & (len(lower) - 1)]
    totals = counts.sum(axis=1, keepdims=True) + strength
    table = prior.copy()
    np.divide(counts + strength * prior, totals, out=table, where=totals > 0)
    return table


def interpolated_tables(counts: list[np.ndarray], strengths: list[float]) -> list[np.ndarray]:
    """Tables P_0 .. P_k from counts[0..k], order j interpolated with strengths[j]."""
    tables = []
    lower = UNIFORM
    for n, strength in zip(counts, strengths, strict=True):
        lower = interpolate(n, lower, strength)
        tables.append(lower)
    return tables


class MarkovModel:
    """P(x_t | up to `order` preceding bases). Where fewer A/C/G/T bases precede a position (the
    start of a sequence, after an N) it predicts from as many as there are."""

    def __init__(self, tables: list[np.ndarray]):
        self.tables = tables
        self.order = len(tables) - 1

    @classmethod
    def fit(cls, sequences: list[np.ndarray], order: int, strength: float) -> "MarkovModel":
        """Counted on `sequences`, every order interpolated with the same strength."""
        return cls(interpolated_tables(count_transitions(sequences, order), [strength] * (order + 1)))

    def base_probabilities(self, codes: np.ndarray) -> np.ndarray:
        """[len(codes), 4] probabilities of A, C, G, T at every position."""
        contexts = kmer_codes(codes, self.order + 1) >> 2
        context_lengths = left_context_lengths(codes, self.order)
        probs = np.empty((len(codes), 4))
        for j, table in enumerate(self.tables):
            at = context_lengths == j
            probs[at] = table[contexts[at] & (4**j - 1)]
        return probs


@dataclass
class Score:
    """Per-base totals over scored (A/C/G/T) positions; add Scores to pool them."""

    nll_sum: float = 0.0  # nats
    correct: int = 0
    count: int = 0

    def __add__(self, other: "Score") -> "Score":
        return Score(self.nll_sum + other.nll_sum, self.correct + other.correct, self.count + other.count)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_sum / self.count)

    @property
    def accuracy(self) -> float:
        return self.correct / self.count


def score(probs: np.ndarray, codes: np.ndarray) -> Score:
    """Score [n, 4] base probabilities against the true bases, at the A/C/G/T positions only."""
    is_base = codes >= 0
    probs, truth = probs[is_base], codes[is_base].astype(np.int64)
    p_true = probs[np.arange(len(truth)), truth]
    return Score(
        nll_sum=float(-np.log(p_true).sum()),
        correct=int((probs.argmax(axis=1) == truth).sum()),
        count=len(truth),
    )
