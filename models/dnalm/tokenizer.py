"""The character vocabulary every janus model shares: 12 ids (embeddings and LM heads are padded
to 16 rows).

    [CLS]0 [SEP]1 [BOS]2 [MASK]3 [PAD]4 [RESERVED]5 [UNK]6 A7 C8 G9 T10 N11

Input is upper-cased and every IUPAC ambiguity code maps to N. Reverse complement works on ids.
"""

from __future__ import annotations

import numpy as np
import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
BASES = "ACGTN"
VOCAB = SPECIAL_TOKENS + tuple(BASES)
VOCAB_SIZE = len(VOCAB)  # 12
PADDED_VOCAB_SIZE = 16

A, C, G, T, N = 7, 8, 9, 10, 11
PAD = 4
MASK = 3
BASE_IDS = (A, C, G, T)  # the four ids whose probabilities make a base distribution

IUPAC_AMBIGUITY = "RYSWKMBDHVN"

_ENCODE = np.full(256, -1, dtype=np.int64)
for _letter, _id in zip("ACGT", BASE_IDS):
    _ENCODE[ord(_letter)] = _id
    _ENCODE[ord(_letter.lower())] = _id
for _letter in IUPAC_AMBIGUITY:
    _ENCODE[ord(_letter)] = N
    _ENCODE[ord(_letter.lower())] = N

_DECODE = np.array([ord("?")] * PADDED_VOCAB_SIZE, dtype=np.uint8)
for _id, _letter in zip((A, C, G, T, N), BASES):
    _DECODE[_id] = ord(_letter)

_COMPLEMENT = torch.arange(PADDED_VOCAB_SIZE)
_COMPLEMENT[[A, C, G, T]] = torch.tensor([T, G, C, A])


def encode(sequence: str | bytes) -> torch.Tensor:
    """DNA text -> LongTensor[L] of ids. Raises ValueError naming the first character that is not
    A/C/G/T or an IUPAC ambiguity code (in either case)."""
    raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else sequence
    ids = _ENCODE[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        pos = int(bad[0])
        raise ValueError(
            f"invalid DNA character {chr(raw[pos])!r} at position {pos + 1} "
            "(expected A, C, G, T or an IUPAC ambiguity code)"
        )
    return torch.from_numpy(ids)


def decode(ids: torch.Tensor) -> str:
    """LongTensor[L] of base ids -> text. Special tokens decode to '?'."""
    return _DECODE[ids.cpu().numpy()].tobytes().decode("ascii")


def reverse_complement(ids: torch.Tensor) -> torch.Tensor:
    """Reverse-complement ids along the last axis: A<->T, C<->G, N and special tokens unchanged."""
    return _COMPLEMENT.to(ids.device)[ids].flip(-1)
