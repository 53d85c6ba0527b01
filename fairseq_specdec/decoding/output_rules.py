"""fairseq's two output rules that read a row's own tokens, for blockwise decoding: a forced
prefix (``--prefix-size``, ``generate(..., prefix_tokens=...)``) and the n-gram ban
(``--no-repeat-ngram-size``). Both act on a block of positions at once: row (b, i) of the
log-probs predicts output step ``steps[b, i]`` (0 = the first token after the BOS).

**Forced prefix**, as ``SequenceGenerator._prefix_tokens`` at beam 1. ``prefix`` is B x P;
at an output step s < min(P, max_len) where ``prefix[b, s]`` is not pad, every token but
``prefix[b, s]`` gets -inf and the forced token keeps its own log-probability (after the
nan, pad and --unkpen rules) as its score. A pad leaves that step free (rows with shorter
prefixes); a forced eos ends the row. At steps s < min(P, max_len) fairseq applies neither
--min-len nor the suppressed tokens, to any row, forced or not (``free_from``). A prefix
longer than the maximum length is cut there: step max_len is eos, as in fairseq.

**N-gram ban**, as fairseq's CUDA kernel (``ngram_repeat_block_cuda``) means it: with
u = BOS, y_0, ..., y_(s-1) the row's tokens before step s (fairseq's ``tokens[:, :s+1]``,
the BOS included), a token w is banned at step s when (u[p-N+1], ..., u[p-1], w), p = s+1,
already occurs in u as an N-gram (u[e-N+1], ..., u[e]) with e <= p-1. One exception: an
N-gram must end at an output token (e >= 1), so that ``--no-repeat-ngram-size 1`` never
bans the BOS symbol (eos by default, which would forbid ending the sentence); for N >= 2 the
exception changes nothing. In a block, "the tokens before" position i are the committed
tokens plus drafts 0..i-1: the verifier scores position i as if those were accepted, and
they are the row's tokens if position i is reached. (fairseq 0.12's Python fallback, the one
its pip wheels run, compares the padded end of the whole token buffer and bans nothing.)
Where both rules meet, the prefix wins: a forced token is never banned.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from fairseq_specdec.decoding.committed import CommittedTokens


class Forced(NamedTuple):
    mask: Tensor  # B x n: the position's token is forced
    tokens: Tensor  # B x n: the forced token (pad where not forced)


def forced_tokens(prefix: Tensor, steps: Tensor, pad: int, max_len: int) -> Forced:
    """Which positions of a block the prefix forces, and to what (``prefix`` B x P, ``steps`` B x n)."""
    width = prefix.size(1)
    tokens = prefix.gather(1, steps.clamp(max=width - 1))
    mask = (steps < min(width, max_len)) & tokens.ne(pad)
    return Forced(mask, torch.where(mask, tokens, torch.full_like(tokens, pad)))


def force_(lprobs: Tensor, forced: Forced, forced_lprobs: Tensor) -> None:
    """At forced positions of ``lprobs`` (B x n x V, in place) keep only the forced token,
    with ``forced_lprobs`` (B x n x 1, read before the other rules) as its log-probability."""
    index = forced.tokens.unsqueeze(-1)  # B x n x 1
    lprobs.masked_fill_(forced.mask.unsqueeze(-1), -math.inf)
    keep = torch.where(forced.mask.unsqueeze(-1), forced_lprobs, lprobs.gather(2, index))
    lprobs.scatter_(2, index, keep)


def banned_ngram_tokens(history: Tensor, lengths: Tensor, drafts: Tensor, size: int, pad: int) -> Tensor:
    """The tokens the n-gram ban (the module's rule, N = ``size``) forbids at each position of
    a block, in index form: B x (n+1) x T, pad where nothing is banned (pad is never a token).

    ``history``: B x W committed tokens, left-padded, BOS first (``CommittedTokens.prefix``),
    row b's first ``W - lengths[b]`` columns are padding; ``drafts``: B x n. Position i predicts
    the token after ``history[b]`` + ``drafts[b, :i]``."""
    assert size >= 1, f"the n-gram size must be >= 1, got {size}"
    seq = torch.cat([history, drafts], dim=1)  # B x T: one row's tokens end at the same column for every row
    bsz, width = history.shape
    total, ctx = seq.size(1), size - 1
    device = seq.device
    start = (width - lengths).view(bsz, 1, 1)  # the BOS column of each row
    predicted = (width + torch.arange(drafts.size(1) + 1, device=device)).view(1, -1, 1)  # 1 x (n+1) x 1
    ends = torch.arange(total, device=device).view(1, 1, -1)  # 1 x 1 x T: the candidate N-gram's last column
    ok = (ends < predicted) & (ends - ctx >= start) & (ends > start) & (predicted - ctx >= start)
    for j in range(ctx):  # the N-1 tokens before the candidate equal the N-1 before the predicted position
        before_end = seq[:, (ends.view(-1) - ctx + j).clamp(min=0)]  # B x T
        before_predicted = seq[:, (predicted.view(-1) - ctx + j).clamp(min=0)]  # B x (n+1)
        ok = ok & before_end.unsqueeze(1).eq(before_predicted.unsqueeze(2))
    return torch.where(ok, seq.unsqueeze(1), torch.full_like(seq, pad).unsqueeze(1))


@dataclass
class BlockRules:
    """The rules for one block of positions (what ``BlockwiseGenerator._constrain`` applies)."""

    forced: Optional[Forced]  # None: no prefix
    banned: Optional[Tensor]  # B x n x T banned tokens (pad: none), None: no n-gram ban
    free_from: int  # --min-len and the suppressed tokens apply at steps >= free_from only


@dataclass
class OutputRules:
    """A batch's forced prefix and n-gram ban; generators build none when neither is asked for."""

    pad: int
    max_len: int
    prefix: Optional[Tensor] = None  # B x P forced tokens of the batch's rows (pad: a free step)
    ngram_size: int = 0  # N of the n-gram ban; 0: off

    @property
    def free_from(self) -> int:
        return 0 if self.prefix is None else min(self.prefix.size(1), self.max_len)

    def forced(self, rows: Tensor, steps: Tensor) -> Optional[Forced]:
        """The prefix's tokens at output steps ``steps`` (B x n) of the batch rows ``rows``."""
        if self.prefix is None:
            return None
        return forced_tokens(self.prefix[rows], steps, self.pad, self.max_len)

    def with_forced_drafts(self, rows: Tensor, drafts: Tensor, steps: Tensor) -> Tensor:
        """``drafts`` (B x n, at output steps ``steps``) with the forced tokens in place of the
        drafter's: drafts the verification would reject are not wasted (speed only)."""
        forced = self.forced(rows, steps)
        return drafts if forced is None else torch.where(forced.mask, forced.tokens, drafts)

    def block(self, committed: CommittedTokens, rows: Tensor, width: int, drafts: Tensor,
              steps: Tensor) -> BlockRules:
        """The rules for the last m positions of a block after ``drafts`` (B x n), whose output
        steps are ``steps`` (B x m, m <= n + 1), for the batch rows ``rows`` (``width`` >= their
        longest committed length, BOS included)."""
        banned = None
        if self.ngram_size > 0:
            history = committed.prefix(rows, width)
            banned = banned_ngram_tokens(history, committed.length[rows], drafts, self.ngram_size, self.pad)
            banned = banned[:, banned.size(1) - steps.size(1):]
        return BlockRules(self.forced(rows, steps), banned, self.free_from)


def output_rules(prefix_tokens: Optional[Tensor], ngram_size: int, bsz: int, pad: int, max_len: int,
                 device: torch.device) -> Optional[OutputRules]:
    """A batch's rules from ``generate``'s ``prefix_tokens`` (B x P or None) and the n-gram
    size (0: off); None when there are none (the common path does no extra work)."""
    if prefix_tokens is not None:
        if prefix_tokens.dim() != 2 or prefix_tokens.size(0) != bsz:
            raise ValueError(f"prefix_tokens must be a batch size x prefix length tensor ({bsz} rows), "
                             f"got shape {tuple(prefix_tokens.shape)}")
        prefix_tokens = prefix_tokens.to(device=device, dtype=torch.long) if prefix_tokens.size(1) > 0 else None
    if prefix_tokens is None and ngram_size <= 0:
        return None
    return OutputRules(pad, max_len, prefix_tokens, max(ngram_size, 0))
