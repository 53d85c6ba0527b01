"""Model-free drafting: an n-gram drafter, and its combination with the Spec-Drafter.

``NGramDrafter`` chains k look-ups: each drafted token is the prediction of the longest
matching context of (committed prefix + tokens drafted so far), looked up both in an
``NGramIndex`` over target-side data and in the row itself (prompt lookup: the last
earlier occurrence of its trailing n-gram). It needs no model and no source, so it is
cheap; it is right where the output repeats the data or itself.

``CombinedDrafter`` runs the trained NAR drafter and the n-gram drafter and keeps, per
row, the proposal with the larger expected accepted length.
"""
from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from fairseq_specdec.drafting.ngram_index import NGramIndex, lookup_in_rows


class NGramDrafter:
    """Drafts k tokens per row by chaining n-gram look-ups (no model).

    Each step takes the longest match: a context of n tokens matched in the index against
    one of m tokens matched in the row's own tokens wins if n > m, else the row wins (on
    equal lengths the row's own continuation is preferred: it is specific to this
    sentence, such as a name being repeated). Where neither matches, the step drafts
    filler that the verifier will reject: the previous token again (or unk where that is
    the BOS), never eos. Once eos is drafted, the rest of the block is eos.

    Per-token confidences are the relative frequencies of the look-ups (in the index, or
    among the row's earlier occurrences of the matched n-gram); filler, what is drafted
    after filler (it follows a rejected token) and what follows a drafted eos have
    confidence 0.
    """

    def __init__(self, index: NGramIndex, pad: int, eos: int, unk: int, prompt_lookup: bool = True):
        self.index, self.pad, self.eos, self.unk = index, pad, eos, unk
        self.prompt_lookup = prompt_lookup

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> Any:
        """No per-sentence state beyond the prefixes: the state is the batch size."""
        return net_input["src_tokens"].size(0)

    def select(self, state: Any, rows: Tensor) -> Any:
        return rows.numel()

    def observe(self, state: Any, states: Tensor, tokens: Tensor, counts: Tensor) -> Any:
        """The verifier's states are not used: the committed prefix is all this drafter reads."""
        return state

    def max_positions(self) -> int:
        return 1 << 30  # no positional limit

    def propose(self, state: Any, prefix: Tensor, block_size: int) -> Tensor:
        """B x k drafted tokens after each left-padded prefix (B x P, starting with eos)."""
        return self.propose_with_confidence(state, prefix, block_size)[0]

    def propose_with_confidence(self, state: Any, prefix: Tensor, block_size: int) -> Tuple[Tensor, Tensor]:
        """B x k drafted tokens and B x k confidences (float) in [0, 1]."""
        assert prefix.size(0) == state, f"{prefix.size(0)} prefixes for a batch of {state} rows"
        committed = prefix.cpu().numpy().astype(np.int64)
        batch, width = committed.shape
        rows = np.full((batch, width + block_size), self.pad, dtype=np.int64)  # prefix + drafts
        rows[:, :width] = committed
        lengths = (committed != self.pad).sum(1)
        confidence = np.zeros((batch, block_size), dtype=np.float64)
        ended = np.zeros(batch, dtype=bool)  # eos drafted
        guessed = np.zeros(batch, dtype=bool)  # filler drafted
        for i in range(block_size):
            token, conf, filler = self._next_token(rows[:, : width + i], lengths + i)
            token[ended] = self.eos
            guessed |= filler
            conf[ended | guessed] = 0.0
            rows[:, width + i], confidence[:, i] = token, conf
            ended |= token == self.eos
        drafts = torch.from_numpy(rows[:, width:]).to(prefix.device)
        return drafts, torch.from_numpy(confidence).float().to(prefix.device)

    def _next_token(self, rows: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One drafting step for every row: the next token, its confidence, and whether it is filler."""
        found = self.index.lookup(rows, lengths)
        token, conf, length = found.token.copy(), found.confidence.copy(), found.length
        if self.prompt_lookup:
            own = lookup_in_rows(rows, lengths, self.index.order)
            use_own = (own.length > 0) & (own.length >= length)
            token[use_own], conf[use_own] = own.token[use_own], own.confidence[use_own]
        none = token < 0
        if none.any():
            last = rows[:, -1]
            token[none] = np.where(last[none] == self.eos, self.unk, last[none])
            conf[none] = 0.0
        return token, conf, none


def expected_accepted(drafts: Tensor, confidence: Tensor, eos: int) -> Tensor:
    """B expected accepted lengths, sum_i prod_{j<=i} confidence[:, j], if each draft is
    accepted independently with its confidence; drafts after the first eos never count."""
    is_eos = drafts.eq(eos).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0  # B x k
    return confidence.float().masked_fill(after_eos, 0.0).cumprod(1).sum(1)


class CombinedDrafter:
    """A trained drafter (``NARDrafter`` or ``FeatureDrafter``) and the ``NGramDrafter`` together: both propose,
    and each row keeps the proposal with the larger ``expected_accepted`` length, the
    NAR drafter's confidence being its softmax probability of its argmax token (ties go
    to the NAR drafter). Both drafters run on every iteration."""

    def __init__(self, nar, ngram: NGramDrafter, eos: int):
        self.nar, self.ngram, self.eos = nar, ngram, eos

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> Any:
        return (self.nar.start(net_input, verifier_encoder_out=verifier_encoder_out),
                self.ngram.start(net_input, verifier_encoder_out=verifier_encoder_out))

    def select(self, state: Any, rows: Tensor) -> Any:
        return self.nar.select(state[0], rows), self.ngram.select(state[1], rows)

    def observe(self, state: Any, states: Tensor, tokens: Tensor, counts: Tensor) -> Any:
        return (self.nar.observe(state[0], states, tokens, counts),
                self.ngram.observe(state[1], states, tokens, counts))

    def max_positions(self) -> int:
        return min(self.nar.max_positions(), self.ngram.max_positions())

    def propose(self, state: Any, prefix: Tensor, block_size: int) -> Tensor:
        return self.propose_with_confidence(state, prefix, block_size)[0]

    def propose_with_confidence(self, state: Any, prefix: Tensor, block_size: int) -> Tuple[Tensor, Tensor]:
        nar_tokens, nar_conf = self.nar.propose_with_confidence(state[0], prefix, block_size)  # B x k
        ngram_tokens, ngram_conf = self.ngram.propose_with_confidence(state[1], prefix, block_size)
        use_ngram = (expected_accepted(ngram_tokens, ngram_conf, self.eos)
                     > expected_accepted(nar_tokens, nar_conf, self.eos)).unsqueeze(1)  # B x 1
        return (torch.where(use_ngram, ngram_tokens, nar_tokens),
                torch.where(use_ngram, ngram_conf, nar_conf.float()))


def with_ngram_drafter(trained, index: NGramIndex, tgt_dict):
    """The n-gram drafter over ``index``, alone (``trained`` None) or combined with the
    trained drafter's proposer ``trained``."""
    ngram = NGramDrafter(index, tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk())
    return ngram if trained is None else CombinedDrafter(trained, ngram, tgt_dict.eos())
