"""A model-free n-gram index over target-side token sequences, for drafting.

For every context of 1..``order`` tokens seen in the data it keeps the most frequent
next token and its relative frequency, count(context, next) / count(context). The whole
corpus is indexed at once with numpy (no Python loop over tokens), and look-ups run for
a whole batch of rows at once.

Sentences are read the way the decoder sees them: BOS (= eos in fairseq) + tokens +
eos. The context (eos,) therefore predicts a sentence's first token, and a context that
starts with eos is the start of a sentence. No context holds eos after its first token:
none crosses a sentence boundary.

Ties (two next tokens equally frequent after a context) go to the smaller token id; in
a dictionary built by fairseq-preprocess that is the token more frequent in its data.
"""
import logging
import time
from typing import Iterable, List, NamedTuple, Sequence

import numpy as np

logger = logging.getLogger(__name__)


class Lookup(NamedTuple):
    """Per row of a batch: the prediction of the longest matching context."""

    token: np.ndarray  # B: predicted next token (-1 where no context matched)
    confidence: np.ndarray  # B: its relative frequency after that context (0 where none)
    length: np.ndarray  # B: length of the matching context, 0..order (0 = no match)


def _flatten(sentences: Iterable[Sequence[int]], eos: int) -> np.ndarray:
    """BOS + s1 + eos + s2 + eos ...: each sentence's eos is also the next one's BOS."""
    eos_only = np.array([eos], dtype=np.int64)
    parts: List[np.ndarray] = [eos_only]
    for sentence in sentences:
        tokens = np.asarray(sentence, dtype=np.int64).reshape(-1)
        parts.append(tokens)
        if tokens.size == 0 or tokens[-1] != eos:
            parts.append(eos_only)
    return np.concatenate(parts)


class NGramIndex:
    """Most frequent next token after every context of 1..order tokens.

    Context ids are built from the right: the id of a context of length n is the index of
    (id of its last n-1 tokens, its first token) in ``keys[n-1]`` (sorted, key =
    parent id * vocab + token; the parent id of a one-token context is 0). A look-up walks
    from the last token leftwards, one ``searchsorted`` per length, and stops at the first
    length that was never seen (no longer context can have been seen either).
    """

    def __init__(self, sentences: Iterable[Sequence[int]], order: int = 4, eos: int = 2,
                 vocab_size: int = None):
        if order < 1:
            raise ValueError(f"the n-gram order must be >= 1, got {order}")
        started = time.perf_counter()
        tokens = _flatten(sentences, eos)
        if tokens.min() < 0:
            raise ValueError("token ids must be >= 0")
        self.order, self.eos = order, eos
        self.vocab_size = int(vocab_size if vocab_size is not None else tokens.max() + 1)
        if tokens.max() >= self.vocab_size:
            raise ValueError(f"token id {int(tokens.max())} is outside the vocabulary of {self.vocab_size}")
        if tokens.size * self.vocab_size >= 2 ** 62:
            raise ValueError("corpus x vocabulary too large for 64-bit context keys")
        self.keys: List[np.ndarray] = []  # per length n-1: sorted context keys; index = context id
        self.next_token: List[np.ndarray] = []  # per length n-1, per context id
        self.confidence: List[np.ndarray] = []
        self._build(tokens)
        self.num_tokens = tokens.size
        logger.info("n-gram index: %d tokens, %s contexts of length 1..%d, built in %.2fs", tokens.size,
                    "/".join(str(k.size) for k in self.keys), order, time.perf_counter() - started)

    def _build(self, tokens: np.ndarray) -> None:
        size, vocab = tokens.size, self.vocab_size
        positions = np.arange(size)
        # start of the current sentence at each position (the position of its BOS eos)
        sentence_start = np.maximum.accumulate(np.where(tokens == self.eos, positions, 0))
        ends = positions[:-1]  # context end positions that have a next token
        parent = np.zeros(size, dtype=np.int64)  # id of the context of length n-1 ending here
        for n in range(1, self.order + 1):
            ends = ends[ends - (n - 1) >= sentence_start[ends]]  # inside one sentence
            if ends.size == 0:
                break
            key = parent[ends] * vocab + tokens[ends - (n - 1)]
            keys, ids = np.unique(key, return_inverse=True)
            self.keys.append(keys)
            self._count_next(ids.reshape(-1), tokens[ends + 1], keys.size)
            parent = np.zeros(size, dtype=np.int64)
            parent[ends] = ids

    def _count_next(self, ids: np.ndarray, following: np.ndarray, num_contexts: int) -> None:
        """Most frequent next token per context id (ties: smaller token) and its share."""
        pairs, counts = np.unique(ids * self.vocab_size + following, return_counts=True)
        context, token = pairs // self.vocab_size, pairs % self.vocab_size
        best_first = np.lexsort((token, -counts, context))  # by context, count down, token up
        context, token, counts = context[best_first], token[best_first], counts[best_first]
        first = np.ones(context.size, dtype=bool)
        first[1:] = context[1:] != context[:-1]
        totals = np.bincount(context, weights=counts, minlength=num_contexts)
        assert first.sum() == num_contexts, "every context id has a next token"
        self.next_token.append(token[first])
        self.confidence.append(counts[first] / totals)

    def lookup(self, rows: np.ndarray, lengths: np.ndarray) -> Lookup:
        """The prediction after each row of ``rows`` (B x L, left-padded: the last
        ``lengths[b]`` columns of row b are its tokens) from its longest matching context."""
        batch, width = rows.shape
        token = np.full(batch, -1, dtype=np.int64)
        confidence = np.zeros(batch, dtype=np.float64)
        matched = np.zeros(batch, dtype=np.int64)
        parent = np.zeros(batch, dtype=np.int64)
        alive = np.ones(batch, dtype=bool)
        for n, keys in enumerate(self.keys, start=1):
            if n > width:
                break
            last = rows[:, width - n]
            alive &= (lengths >= n) & (last >= 0) & (last < self.vocab_size)
            key = parent * self.vocab_size + np.where(alive, last, 0)
            ids = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            alive &= keys[ids] == key
            if not alive.any():
                break
            parent = np.where(alive, ids, 0)
            token[alive] = self.next_token[n - 1][ids[alive]]
            confidence[alive] = self.confidence[n - 1][ids[alive]]
            matched[alive] = n
        return Lookup(token, confidence, matched)


def lookup_in_rows(rows: np.ndarray, lengths: np.ndarray, order: int) -> Lookup:
    """Prompt lookup: for each row, the longest trailing n-gram (n <= order) that also
    occurs earlier in the row, and the token that followed its LAST earlier occurrence.
    The confidence is the share of the earlier occurrences followed by that token.

    ``rows`` is B x L and left-padded like ``NGramIndex.lookup``'s input."""
    batch, width = rows.shape
    token = np.full(batch, -1, dtype=np.int64)
    confidence = np.zeros(batch, dtype=np.float64)
    matched = np.zeros(batch, dtype=np.int64)
    if width < 2:
        return Lookup(token, confidence, matched)
    # match[b, e]: the n tokens ending at column e (< width - 1) equal the row's last n
    match = rows[:, : width - 1] == rows[:, width - 1 :]
    following = rows[:, 1:]  # the token after column e
    first_column = width - lengths  # of each row's tokens
    for n in range(1, min(order, width - 1) + 1):
        if n > 1:
            earlier = np.zeros_like(match)
            earlier[:, n - 1 :] = rows[:, : width - n] == rows[:, width - n : width - n + 1]
            match &= earlier
        ends = np.arange(width - 1)
        match &= (ends - (n - 1))[None, :] >= first_column[:, None]  # inside the row's tokens
        found = match.any(1) & (lengths >= n + 1)
        if not found.any():
            break
        last_end = width - 2 - np.argmax(match[:, ::-1], axis=1)
        chosen = following[np.arange(batch), last_end]
        agree = (match & (following == chosen[:, None])).sum(1)
        token[found] = chosen[found]
        confidence[found] = agree[found] / np.maximum(match.sum(1)[found], 1)
        matched[found] = n
    return Lookup(token, confidence, matched)
