"""Spec-Verification's acceptance rule and commit plan (fairseq_specdec/acceptance.py): pure tensors."""
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fairseq_specdec.verification.acceptance import Verdict, accept_drafts, plan_commit  # noqa: E402

EOS = 2
V = 8
NEG = -20.0


def table(rows):
    """One sentence's (k+1) x V log-prob table from per-row {token: lprob}; other tokens get NEG."""
    out = torch.full((len(rows), V), NEG)
    for i, row in enumerate(rows):
        for tok, lp in row.items():
            out[i, tok] = lp
    return out


def verdict(lprobs_rows, drafts, **kw):
    lprobs = table(lprobs_rows).unsqueeze(0)
    v = accept_drafts(lprobs, torch.tensor([drafts]), **kw)
    return int(v.num_accepted[0]), int(v.next_token[0])


# top-1 per row: 3, 4, 5, 6; each row also has a runner-up and a third token
ROWS = [
    {3: -0.1, 7: -2.5, 5: -3.0},
    {4: -0.2, 3: -2.0, 6: -4.0},
    {5: -0.3, 6: -1.0, 7: -1.2},
    {6: -0.05, 4: -3.0, 5: -5.0},
]


def test_all_drafts_accepted_then_the_top1_after_them():
    assert verdict(ROWS, [3, 4, 5]) == (3, 6)


def test_no_draft_accepted_gives_the_first_top1():
    assert verdict(ROWS, [7, 4, 5]) == (0, 3)


def test_some_accepted_stops_at_the_first_rejection():
    assert verdict(ROWS, [3, 4, 7]) == (2, 5)
    assert verdict(ROWS, [3, 6, 5]) == (1, 4)
    # a rejection ends acceptance even when later drafts would match the verifier
    assert verdict(ROWS, [3, 7, 5]) == (1, 4)


def test_beta1_ignores_tau():
    # the runner-up is within tau, but beta=1 accepts the top-1 only
    assert verdict(ROWS, [3, 4, 6], beta=1, tau=100.0) == (2, 5)


def test_ties_beta1_accepts_exactly_the_token_topk_chooses():
    tied = torch.full((1, 2, V), NEG)
    tied[0, 0, 3] = tied[0, 0, 6] = -0.7  # two tokens tied for the top
    tied[0, 1, 4] = -0.1
    chosen = int(tied[0, 0].topk(1).indices[0])
    other = 6 if chosen == 3 else 3
    v = accept_drafts(tied, torch.tensor([[chosen]]), beta=1)
    assert (int(v.num_accepted[0]), int(v.next_token[0])) == (1, 4)
    v = accept_drafts(tied, torch.tensor([[other]]), beta=1)
    assert (int(v.num_accepted[0]), int(v.next_token[0])) == (0, chosen)


def test_tau_boundary_is_inclusive():
    top1, tau = -0.5, 1.0
    at = [{3: top1, 4: top1 - tau}, {5: -0.1}]  # exactly representable: -0.5 and -1.5
    assert verdict(at, [4], beta=2, tau=tau) == (1, 5)
    beyond = [{3: top1, 4: top1 - tau - 2.0 ** -20}, {5: -0.1}]
    assert verdict(beyond, [4], beta=2, tau=tau) == (0, 3)
    # tau = 0 with beta > 1 accepts only tokens tied with the top-1
    assert verdict(at, [4], beta=2, tau=0.0) == (0, 3)
    assert verdict(at, [3], beta=2, tau=0.0) == (1, 5)


def test_beta_above_one_accepts_a_runner_up_within_tau():
    # row 0: 7 is 2nd-best at -2.5, 2.4 below the top-1
    assert verdict(ROWS, [7, 4, 5], beta=2, tau=2.5) == (3, 6)
    assert verdict(ROWS, [7, 4, 5], beta=2, tau=2.3) == (0, 3)  # too far
    # row 2: 7 is 3rd-best, within tau: rejected by beta=2, accepted by beta=3
    assert verdict(ROWS, [3, 4, 7], beta=2, tau=1.0) == (2, 5)
    assert verdict(ROWS, [3, 4, 7], beta=3, tau=1.0) == (3, 6)
    # the top-1 is always acceptable
    assert verdict(ROWS, [3, 4, 5], beta=3, tau=0.0) == (3, 6)


def test_next_token_is_the_top1_even_in_relaxed_mode():
    # after the accepted runner-up at row 0, the next token is row 1's top-1, not a runner-up
    assert verdict(ROWS, [7, 3, 6], beta=2, tau=3.0) == (3, 6)
    # row 1: token 6 is 3rd-best but 3.8 below the top-1: rejected, the top-1 (4) comes next
    assert verdict(ROWS, [7, 6, 7], beta=3, tau=2.5) == (1, 4)


@pytest.mark.parametrize("beta,tau", [(1, 0.0), (2, 0.5), (3, 1.5)])
def test_batched_equals_row_by_row(beta, tau):
    gen = torch.Generator().manual_seed(beta)
    bsz, k, vocab = 64, 5, 12
    lprobs = torch.log_softmax(torch.randn(bsz, k + 1, vocab, generator=gen) * 2, dim=-1)
    # drafts mostly among each row's top-3 so that every acceptance length occurs
    top3 = lprobs[:, :k].topk(3, dim=-1).indices
    pick = torch.multinomial(torch.tensor([0.75, 0.15, 0.1]), bsz * k, replacement=True, generator=gen)
    drafts = top3.gather(-1, pick.view(bsz, k, 1)).squeeze(-1)
    batched = accept_drafts(lprobs, drafts, beta=beta, tau=tau)
    for b in range(bsz):
        single = accept_drafts(lprobs[b:b + 1], drafts[b:b + 1], beta=beta, tau=tau)
        assert int(single.num_accepted[0]) == int(batched.num_accepted[b])
        assert int(single.next_token[0]) == int(batched.next_token[b])
        # and both agree with the rule written out in Python
        n = 0
        while n < k:
            lp = lprobs[b, n]
            ranked = lp.topk(beta).indices.tolist()
            d = int(drafts[b, n])
            if d not in ranked or float(lp[d]) < float(lp.max()) - tau:
                break
            n += 1
        assert int(batched.num_accepted[b]) == n
        assert int(batched.next_token[b]) == int(lprobs[b, n].argmax())
    assert len(set(batched.num_accepted.tolist())) >= 3, "the draws must cover several acceptance lengths"


def test_invalid_beta_tau_and_shapes():
    lprobs = table(ROWS).unsqueeze(0)
    with pytest.raises(AssertionError, match="beta"):
        accept_drafts(lprobs, torch.tensor([[3, 4, 5]]), beta=0)
    with pytest.raises(AssertionError, match="tau"):
        accept_drafts(lprobs, torch.tensor([[3, 4, 5]]), beta=2, tau=-0.1)
    with pytest.raises(AssertionError, match="k\\+1"):
        accept_drafts(lprobs, torch.tensor([[3, 4]]))


# ---------------------------------------------------------------- plan_commit

def plan(drafts, num_accepted, next_token):
    drafts = torch.tensor(drafts)
    return plan_commit(drafts, Verdict(torch.tensor(num_accepted), torch.tensor(next_token)), EOS)


def committed(p, b):
    return p.tokens[b, : int(p.count[b])].tolist()


def test_plan_commit_accepted_drafts_then_the_verifier_token():
    p = plan([[3, 4, 5], [3, 4, 5], [3, 4, 5]], [0, 2, 3], [7, 6, 4])
    assert [committed(p, b) for b in range(3)] == [[7], [3, 4, 6], [3, 4, 5, 4]]
    assert p.count.tolist() == [1, 3, 4]
    assert p.num_accepted.tolist() == [0, 2, 3]
    assert p.finished.tolist() == [False, False, False]


def test_plan_commit_accepted_eos_ends_the_sentence():
    # eos accepted at position 1: nothing after it (draft 5, verifier token 6) is committed
    p = plan([[3, EOS, 5], [EOS, 4, 5]], [3, 1], [6, 7])
    assert committed(p, 0) == [3, EOS]
    assert committed(p, 1) == [EOS]
    assert p.count.tolist() == [2, 1]
    assert p.num_accepted.tolist() == [2, 1]
    assert p.finished.tolist() == [True, True]


def test_plan_commit_rejected_eos_does_not_finish():
    # eos drafted at position 2 but only 1 draft accepted: the verifier's token 5 replaces it
    p = plan([[3, 4, EOS]], [1], [5])
    assert committed(p, 0) == [3, 5]
    assert p.count.tolist() == [2] and p.num_accepted.tolist() == [1]
    assert p.finished.tolist() == [False]


def test_plan_commit_verifier_eos_finishes():
    p = plan([[3, 4, 5], [3, 4, 5]], [2, 3], [EOS, EOS])
    assert committed(p, 0) == [3, 4, EOS]
    assert committed(p, 1) == [3, 4, 5, EOS]
    assert p.count.tolist() == [3, 4] and p.num_accepted.tolist() == [2, 3]
    assert p.finished.tolist() == [True, True]


def test_plan_commit_from_accept_drafts_with_eos_in_the_table():
    rows = [{3: -0.1}, {EOS: -0.1}, {5: -0.1}, {6: -0.1}]
    lprobs = table(rows).unsqueeze(0)
    drafts = torch.tensor([[3, EOS, 5]])
    v = accept_drafts(lprobs, drafts)
    assert int(v.num_accepted[0]) == 3  # the verifier agrees with every draft, eos included
    p = plan_commit(drafts, v, EOS)
    assert committed(p, 0) == [3, EOS]
    assert p.finished.tolist() == [True] and p.num_accepted.tolist() == [2]


def test_ties_break_as_fairseqs_greedy_search():
    """Among exactly tied log-probabilities the verifier's token is the one fairseq's greedy
    search picks (``BeamSearch.step`` at beam 1, the topk of 2 candidates), not just any top-1:
    rounded random scores make many ties, and at several vocabulary sizes topk(1) and topk(2)
    disagree on some of them."""
    from fairseq import search
    from fairseq.data import Dictionary
    torch.manual_seed(0)
    disagreements = 0
    for vocab in (12, 300, 10088):
        d = Dictionary()
        for i in range(vocab - d.nspecial):
            d.add_symbol(f"w{i}")
        lprobs = torch.randn(64, 1, len(d)).round()  # B x (k+1) x V, k = 0
        fairseq_token = search.BeamSearch(d).step(1, lprobs, torch.zeros(64, 1, 1))[1][:, 0]
        verdict = accept_drafts(lprobs, torch.zeros(64, 0, dtype=torch.long))
        assert torch.equal(verdict.next_token, fairseq_token)
        disagreements += int((lprobs[:, 0].topk(1, -1)[1][:, 0] != fairseq_token).sum())
    assert disagreements > 0, "the ties should be ones where topk(1) differs"
