"""Speculative sampling with deterministic drafts, as batched tensor functions.

The target at every position is fairseq's sampling distribution (``search.Sampling``
after ``SequenceGenerator``'s temperature and per-step rules): ``sampling_distribution``.
Every drafter here proposes one token per position (its proposal q is one-hot), and
speculative sampling (Leviathan et al., 2023; Chen et al., 2023) then reads: accept the
draft x_i with probability p_i(x_i); at the first rejection commit a token drawn from
max(0, p_i - q_i), normalized (p_i without x_i); when every draft is accepted, commit a
token drawn from p_{n+1}.

``sample_block`` draws this with one uniform u per row and output step (``draw_uniforms``,
from torch's global RNG, which fairseq-generate seeds with --seed): s_i = F_i^{-1}(u_i),
the inverse of p_i's cumulative distribution in vocabulary order, is the sample at
position i, and x_i is accepted iff s_i = x_i. Since the output is then a function of the
uniforms alone, a seed gives the same translations with any drafter, block size or
adaptive choice (lean greedy's sampling included), and differs from fairseq's own
sampling only in which random numbers are drawn, not in distribution.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from fairseq_specdec.verification.acceptance import Verdict


@dataclass(frozen=True)
class SamplingRule:
    """fairseq's --sampling truncation (-1: off). With both set, top-p wins, as in fairseq."""

    topk: int = -1  # --sampling-topk: sample among the k most probable tokens
    topp: float = -1.0  # --sampling-topp: among the smallest set whose mass reaches p


def sampling_rule(args) -> Optional[SamplingRule]:
    """The rule fairseq-generate's options ask for (None without --sampling); the
    truncation options need --sampling, as fairseq's own ``build_generator`` asserts."""
    if not args.sampling:
        for flag, value in (("--sampling-topk", args.sampling_topk), ("--sampling-topp", args.sampling_topp)):
            if value >= 0:
                raise ValueError(f"{flag} {value} requires --sampling")
        return None
    return SamplingRule(topk=args.sampling_topk, topp=args.sampling_topp)


def sampling_distribution(lprobs: Tensor, topk: int = -1, topp: float = -1.0) -> Tensor:
    """The distribution ``search.Sampling`` draws from, over B x n x V log-probabilities
    (temperature and fairseq's per-step rules applied): B x n x V float probabilities
    summing to 1. ``lprobs`` is not modified.

    top-p (``topp`` > 0): in the order of decreasing probability, token j is kept iff the
    mass of the tokens before it is < p (the first token always): fairseq's rule of the
    tokens whose inclusive cumulative mass is < p plus one more, so a set whose mass reaches
    p exactly stops there. Ties are kept lower index first (fairseq's order among ties is
    its sort's). Else top-k (``topk`` > 0): the k largest. Then renormalized.
    """
    probs = lprobs.float().exp()  # B x n x V
    if topp > 0:
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        mass = sorted_probs.cumsum(dim=-1)  # inclusive, as fairseq's
        kept_sorted = torch.cat([torch.ones_like(mass[..., :1], dtype=torch.bool), mass[..., :-1] < topp], dim=-1)
        probs = probs * torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)
    elif topk > 0:
        top = lprobs.topk(min(topk, lprobs.size(-1)), dim=-1).indices  # B x n x k
        probs = probs * torch.zeros_like(probs, dtype=torch.bool).scatter(-1, top, True)
    return probs / probs.sum(dim=-1, keepdim=True)


def sampling_candidates(lprobs: Tensor, rule: SamplingRule) -> Tuple[Tensor, Optional[Tensor]]:
    """What ``sample_block`` draws from: top-k alone (k < V): the B x n x k probabilities
    (unnormalized) of the k kept tokens and their ids, both in vocabulary order, so that
    the k-wide inverse CDF draws from the same distribution as the V-wide one over
    ``sampling_distribution``, and picks the same token except where a uniform falls within
    float rounding of a CDF boundary (the wide path normalizes first), at a fraction of the
    work (fairseq's own sampling also works on the top k); otherwise
    ``sampling_distribution``'s B x n x V probabilities and None."""
    if rule.topk > 0 and rule.topp <= 0 and rule.topk < lprobs.size(-1):
        values, ids = lprobs.topk(rule.topk, dim=-1)  # B x n x k, by decreasing value
        ids, order = ids.sort(dim=-1)
        return values.gather(-1, order).float().exp(), ids
    return sampling_distribution(lprobs, rule.topk, rule.topp), None


def draw_uniforms(bsz: int, steps: int, device: torch.device) -> Tensor:
    """B x steps uniforms in [0, 1) from torch's global RNG: one per row and output step,
    drawn once per batch."""
    return torch.rand(bsz, steps, device=device)


def block_uniforms(uniforms: Tensor, rows: Tensor, steps: Tensor) -> Tensor:
    """The uniforms of ``rows`` (B) at output ``steps`` (B x m), steps past the last
    clamped (there fairseq's length rule leaves only eos)."""
    return uniforms[rows].gather(1, steps.clamp(max=uniforms.size(1) - 1))


def inverse_cdf(probs: Tensor, uniforms: Tensor) -> Tensor:
    """B x m tokens: for each of the B x m x V distributions (unnormalized is fine) the
    first token whose cumulative mass in vocabulary order exceeds u x total. A token of
    zero probability is never chosen (its cumulative mass equals its predecessor's)."""
    cdf = probs.cumsum(dim=-1)  # B x m x V
    total = cdf[..., -1:].contiguous()
    token = torch.searchsorted(cdf, uniforms.unsqueeze(-1) * total, right=True)
    last = torch.searchsorted(cdf, total)  # the last token with mass: u x total rounded up to total
    return torch.minimum(token, last).squeeze(-1)


def sample_block(probs: Tensor, drafts: Tensor, uniforms: Tensor, ids: Optional[Tensor] = None) -> Verdict:
    """Speculative sampling of one block.

    Args:
        probs: B x (n+1) x V target distributions; row i follows the committed prefix plus
            drafts[:, :i] (unnormalized is fine).
        drafts: B x n drafted tokens (n = 0: plain sampling).
        uniforms: B x (n+1), independent uniforms in [0, 1), one per output step.
        ids: B x (n+1) x C when ``probs`` is over C candidate tokens (``sampling_candidates``):
            the token of each candidate, ascending; None when ``probs`` is over the vocabulary.

    Returns the accepted draft count and the token after them (``plan_commit``'s input).

    Why it is exact, for any drafter: s_i = F_i^{-1}(u_i) ~ p_i, and x_i is accepted iff
    s_i = x_i, i.e. with probability p_i(x_i); given a rejection s_i ~ p_i without x_i,
    renormalized, which is Leviathan et al.'s residual max(0, p_i - q_i) for a one-hot q_i.
    Either way the committed token is s_i, a draw from p_i given the committed prefix with
    u_i independent of it: the output is ancestral sampling from the target, whatever the drafts.
    """
    bsz, n = drafts.shape
    assert probs.shape[:2] == (bsz, n + 1), f"probs must be B x (n+1) x V, got {tuple(probs.shape)}"
    assert uniforms.shape == (bsz, n + 1), f"uniforms must be B x (n+1), got {tuple(uniforms.shape)}"
    samples = inverse_cdf(probs, uniforms)  # B x (n+1)
    if ids is not None:
        samples = ids.gather(2, samples.unsqueeze(-1)).squeeze(-1)
    num_accepted = samples[:, :n].eq(drafts).long().cumprod(dim=1).sum(dim=1)  # B
    next_token = samples.gather(1, num_accepted.unsqueeze(1)).squeeze(1)
    return Verdict(num_accepted=num_accepted, next_token=next_token)
