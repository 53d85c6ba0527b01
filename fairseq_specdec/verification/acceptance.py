"""Spec-Verification's acceptance rule as a batched tensor function (no model needed).

A drafted token is accepted while it is among the verifier's top-beta tokens AND its
log-probability is within tau of the verifier's top-1 (Xia et al., 2023, Sec. 3.2).
At the first rejection, the verifier's top-1 at that position is committed instead;
when all k drafts are accepted, the top-1 after the last draft is committed too.
With beta = 1 the rule accepts exactly the tokens greedy decoding would pick.
"""
from typing import NamedTuple

import torch
from torch import Tensor


class Verdict(NamedTuple):
    num_accepted: Tensor  # B: length of the accepted draft prefix, 0..k
    next_token: Tensor  # B: the verifier's top-1 after the accepted prefix


def accept_drafts(lprobs: Tensor, drafts: Tensor, beta: int = 1, tau: float = 1.0) -> Verdict:
    """Apply the top-beta / tau acceptance rule.

    Args:
        lprobs: B x (k+1) x V verifier log-probabilities; row i scores the token that
            follows the committed prefix plus drafts[:, :i].
        drafts: B x k drafted tokens.
        beta: a draft must be among the verifier's top-beta tokens (beta >= 1).
        tau: and within tau of the top-1 log-probability (tau >= 0).
    """
    assert beta >= 1, f"beta must be >= 1, got {beta}"
    assert tau >= 0, f"tau must be >= 0, got {tau}"
    bsz, k = drafts.shape
    assert lprobs.shape[:2] == (bsz, k + 1), f"lprobs must be B x (k+1) x V, got {tuple(lprobs.shape)}"
    # at least the top 2, as fairseq's greedy search takes them (topk of 2 x beam): among exact
    # ties its first is not always topk(1)'s, and the verifier's token must be fairseq's
    top_lprobs, top_tokens = lprobs.topk(max(beta, 2), dim=-1)  # B x (k+1) x max(beta, 2)
    best_lprob, best_token = top_lprobs[..., 0], top_tokens[..., 0]  # B x (k+1)
    scored = top_tokens[:, :k, :beta]  # B x k x beta
    in_top_beta = scored.eq(drafts.unsqueeze(-1)).any(-1)  # B x k
    if beta > 1:
        draft_lprob = lprobs[:, :k].gather(-1, drafts.unsqueeze(-1)).squeeze(-1)  # B x k
        ok = in_top_beta & (draft_lprob >= best_lprob[:, :k] - tau)
    else:
        ok = in_top_beta
    # length of the all-accepted prefix: cumulative product of accepted flags
    num_accepted = ok.long().cumprod(dim=1).sum(dim=1)  # B
    next_token = best_token.gather(1, num_accepted.unsqueeze(1)).squeeze(1)
    return Verdict(num_accepted=num_accepted, next_token=next_token)


class CommitPlan(NamedTuple):
    tokens: Tensor  # B x (k+1): accepted drafts, then the verifier's token (garbage beyond count)
    count: Tensor  # B: tokens committed this iteration
    num_accepted: Tensor  # B: drafts among them
    finished: Tensor  # B: the committed tokens end with eos


def plan_commit(drafts: Tensor, verdict: Verdict, eos: int) -> CommitPlan:
    """What an iteration commits: the accepted drafts, then the verifier's next token.

    An accepted eos ends the sentence there: nothing after it is committed.
    """
    bsz, k = drafts.shape
    n = verdict.num_accepted
    positions = torch.arange(k, device=drafts.device).unsqueeze(0)  # 1 x k
    accepted_eos = drafts.eq(eos) & (positions < n.unsqueeze(1))  # B x k
    has_eos = accepted_eos.any(1)
    first_eos = accepted_eos.long().cumsum(1).eq(0).sum(1)  # B: position of the first accepted eos, else k
    next_token = verdict.next_token.unsqueeze(1)
    tokens = torch.cat([drafts, next_token], dim=1).scatter(1, n.unsqueeze(1), next_token)
    num_accepted = torch.where(has_eos, first_eos + 1, n)
    count = torch.where(has_eos, first_eos + 1, n + 1)
    finished = has_eos | verdict.next_token.eq(eos)
    return CommitPlan(tokens=tokens, count=count, num_accepted=num_accepted, finished=finished)
