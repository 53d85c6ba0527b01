"""Plain references for the output rules of ``fairseq_specdec/decoding/output_rules.py``,
written one row and one position at a time over Python lists, and fairseq's greedy search
with a correct n-gram blocker (fairseq 0.12's Python blocker bans nothing)."""
import math
from typing import Iterable, List, Set

import torch
from fairseq.sequence_generator import SequenceGenerator


def plain_banned(seq: List[int], n: int) -> Set[int]:
    """Tokens the n-gram ban forbids after ``seq`` (the BOS, then the tokens so far): the last
    token of every earlier n-gram of ``seq`` that ends at an output token (not the BOS) and
    starts with the n-1 tokens ``seq`` ends with."""
    p = len(seq)  # the predicted token's index
    if p < n:
        return set()
    context = seq[p - n + 1:]
    return {seq[e] for e in range(max(n - 1, 1), p) if seq[e - n + 1:e] == context}


class PlainNGramBlocker:
    """fairseq's ``repeat_ngram_blocker`` interface, with ``plain_banned`` on each row's
    tokens so far (``tokens[:, :step + 1]``, the BOS included); idle at the ``forced`` steps
    (a forced prefix wins over the ban)."""

    def __init__(self, n: int, forced: Iterable[int] = ()):
        self.no_repeat_ngram_size = n
        self.forced = set(forced)
        self.changed = 0  # (row, step) pairs where the rule banned the model's top token

    def __call__(self, tokens, lprobs, bsz: int, beam_size: int, step: int):
        if step in self.forced:
            return lprobs
        for row, seq in enumerate(tokens[:, : step + 1].tolist()):
            words = sorted(plain_banned(seq, self.no_repeat_ngram_size))
            if words:
                self.changed += int(lprobs[row].argmax()) in words
                lprobs[row, words] = -math.inf
        return lprobs


def greedy_with_ban(models, tgt_dict, n: int, forced: Iterable[int] = (), **kwargs) -> SequenceGenerator:
    """fairseq's greedy search (``--beam 1``) applying the n-gram ban ``plain_banned``,
    except at the ``forced`` steps."""
    generator = SequenceGenerator(models, tgt_dict, beam_size=1, **kwargs)
    generator.repeat_ngram_blocker = PlainNGramBlocker(n, forced)
    return generator


def repeated_ngrams(tokens: List[int], n: int) -> int:
    """How many of the n-grams of ``tokens`` occurred earlier in it."""
    seen, repeats = set(), 0
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        repeats += gram in seen
        seen.add(gram)
    return repeats


def padded(rows: List[List[int]], pad: int, left: bool = True) -> torch.Tensor:
    """Rows of different lengths as one tensor, padded on the left (or the right)."""
    width = max(len(r) for r in rows)
    fill = [[pad] * (width - len(r)) for r in rows]
    return torch.tensor([f + r if left else r + f for f, r in zip(fill, rows)], dtype=torch.long)
