"""Labels as prompt tokens, for label-conditioned generation (HybriDNA §3.3.2; spec §4.1, §7 item 17).

The tokenisation: one prompt token per (position, character) of the label.

A label is a string with one character per condition, as in regLM: "300" means level 3 in the
first condition (HepG2) and level 0 in the second and third (K562, SK-N-SH); a binary task has
one-character labels ("0", "1"). Every label a model is trained on has the same number of
characters k, and the label becomes the k prompt tokens named "1:3", "2:0", "3:0" (1-based
position, then the character). A conditioned sequence is

    [start token(s)] z_1 ... z_k x_1 ... x_L

and the loss covers the bases x only (dnalm.interface.DNALM.prompted_logits never predicts a z).

Why this one of the spec's three choices (one token per digit value shared across positions; one
per (condition, level) pair; one per whole label string):
- Unlike a token per whole label, it composes: the paper's target labels (300, 030, 003 for
  enhancers: 0.16% of the training set) are rare as whole strings, but each of their
  (condition, level) tokens is seen in a large share of the training sequences, so the rare
  combination is built from well-trained parts, and a combination never seen in training can
  still be asked for.
- Unlike one token per digit value shared across positions (regLM's reuse of vocabulary ids), a
  token says by itself which condition it sets, instead of leaving that to its place in the
  prompt.
- For one-character labels it is the same as one token per label.

The names of a model's prompt tokens are in its config (prompt_tokens), so dnalm.save/load rebuild
its embedding; the labels it was trained on are recorded in config.extra["prompt_labels"], for
listing. A label is usable when it has k characters and every (position, character) token
exists.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from .interface import DNALM, IGNORE_INDEX, base_labels
from .tokenizer import BASE_IDS

LABELS_KEY = "prompt_labels"  # in config.extra: the labels a model was fine-tuned on
TOKENISATION = "one prompt token per (position, character) of the label"


class LabelError(ValueError):
    """A label the model cannot encode, or a set of labels that do not fit the tokenisation."""


def label_token_names(label: str) -> list[str]:
    """'300' -> ['1:3', '2:0', '3:0']: one prompt token per (1-based position, character)."""
    return [f"{i}:{c}" for i, c in enumerate(label, start=1)]


def check_labels(labels) -> list[str]:
    """The distinct labels, sorted, after checking they can be tokenised: non-empty, without
    whitespace, all of one length."""
    distinct = sorted({str(label) for label in labels})
    for label in distinct:
        if not label or any(c.isspace() for c in label):
            raise LabelError(f"label {label!r}: labels must be non-empty and without whitespace")
    lengths = sorted({len(label) for label in distinct})
    if len(lengths) > 1:
        examples = ", ".join(next(label for label in distinct if len(label) == n) for n in lengths)
        raise LabelError(f"labels have different lengths ({examples}): a label is one character per condition "
                         f"({TOKENISATION}), so all labels need the same number of characters")
    return distinct


def known_labels(model: DNALM) -> list[str]:
    """The labels the model was fine-tuned on (config.extra), else none."""
    return list((getattr(model.config, "extra", None) or {}).get(LABELS_KEY, []))


def label_length(model: DNALM) -> int | None:
    """The number of characters (prompt tokens) of the model's labels; None without prompt tokens."""
    positions = {int(name.split(":", 1)[0]) for name in model.prompt_tokens if name.split(":", 1)[0].isdigit()}
    return max(positions) if positions else None


def add_label_prompts(model: DNALM, labels, generator: torch.Generator | None = None) -> list[str]:
    """Give the model the prompt tokens of labels (new embedding rows, random; existing rows
    unchanged) and record the labels in its config; returns the tokens added."""
    distinct = check_labels(labels)
    length = label_length(model)
    if length is not None and len(distinct[0]) != length:
        raise LabelError(f"labels of {len(distinct[0])} characters ({distinct[0]!r}), but the model's prompt "
                         f"tokens are for labels of {length} ({', '.join(known_labels(model)) or 'none recorded'})")
    names = [name for label in distinct for name in label_token_names(label)]
    new = [name for name in dict.fromkeys(names) if name not in model.prompt_tokens]
    model.add_prompt_tokens(new, generator=generator)
    recorded = sorted(set(known_labels(model)) | set(distinct))
    extra = dict(getattr(model.config, "extra", None) or {})
    extra[LABELS_KEY] = recorded
    model.config = replace(model.config, extra=extra)
    return new


def describe_labels(model: DNALM) -> str:
    """What --label accepts, for error messages."""
    labels = known_labels(model)
    if not model.prompt_tokens:
        return "the model has no prompt tokens (make one with janus finetune --generative)"
    per_position: dict[int, list[str]] = {}
    for name in model.prompt_tokens:
        position, char = name.split(":", 1)
        per_position.setdefault(int(position), []).append(char)
    levels = "; ".join(f"position {p}: {' or '.join(sorted(chars))}" for p, chars in sorted(per_position.items()))
    trained = f"the model knows the labels {', '.join(labels)}" if labels else "the model records no training labels"
    return (f"{trained} (labels of {len(per_position)} character(s), one prompt token per position and "
            f"character; it has tokens for {levels})")


def label_prompt_ids(model: DNALM, label: str) -> torch.Tensor:
    """The prompt token ids [k] of label; LabelError listing the labels the model knows otherwise."""
    names = label_token_names(str(label))
    if not model.prompt_tokens or len(names) != label_length(model) or any(
            n not in model.prompt_tokens for n in names):
        raise LabelError(f"unknown label {label!r}: {describe_labels(model)}")
    return model.prompt_token_ids(names)


# --- the conditional objective ----------------------------------------------------------------


def conditional_loss(model: DNALM, prompt_ids: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the bases input_ids [B, L] given the prompts prompt_ids [B, k] (spec
    Eq. 7): over the bases only, N positions excluded; no prompt token is ever a target."""
    logits = model.prompted_logits(prompt_ids, input_ids)
    return F.cross_entropy(logits.flatten(0, 1), base_labels(input_ids).flatten(), ignore_index=IGNORE_INDEX)


def next_base_counts(model: DNALM, prompt_ids: torch.Tensor, input_ids: torch.Tensor) -> tuple[float, int, int]:
    """(summed cross-entropy, bases whose most likely base (A/C/G/T) is right, bases counted) of
    a held-out batch given its prompts, N positions excluded: next-base accuracy is the middle
    over the last (the regLM convention for picking a generative checkpoint)."""
    logits = model.prompted_logits(prompt_ids, input_ids)
    labels = base_labels(input_ids)
    counted = labels != IGNORE_INDEX
    total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    predicted = torch.tensor(BASE_IDS, device=logits.device)[logits[..., list(BASE_IDS)].argmax(-1)]
    return float(total.detach()), int(((predicted == input_ids) & counted).sum()), int(counted.sum())
