"""Speculative beam search's potential (issue 23, item 1), the pure parts: what fairseq's
beam search keeps at each step, a drafter's tree of continuations, and how many beam
steps one iteration could replay exactly on the tree's verified log-probabilities.

Definitions (N = beam size, W = tree width, k = tree depth):

* ``kept[t]``: the N hypotheses fairseq's beam search continues *into* step t (the rows
  of its ``tokens`` buffer at step t; at step 0 the N copies of the empty prefix, of which
  ``BeamSearch.step`` reads only the first). T steps run: ``kept`` has T entries.
* The tree grown at step t (``build_tree``): level 0 holds the distinct hypotheses of
  ``kept[t]`` with fairseq's cumulative scores; level d + 1 holds the W best (node of
  level d, token) extensions, over all nodes of level d, by that score plus the drafter's
  log-probabilities along the path (a beam search of width W seeded with N roots). EOS
  never extends a node: a continuing hypothesis never ends with EOS (EOS candidates are
  finalized from their parent's log-probabilities). The verifier scores the N roots' last
  tokens and the W * k nodes in one forward (tree attention).
* Replay: step t always runs (its N roots were fed). Step t + d, for d = 1..k, runs on the
  same forward when every ``kept[t + d']`` with d' <= d lies in level d' of the tree.
  ``tree_reach`` is the largest such d; an iteration advances ``1 + min(k, reach)`` steps,
  fewer only where the search ends (``iteration_steps``). Steps the replay runs use the
  verifier's own log-probabilities, so the output is fairseq's.
"""
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Protocol, Sequence, Tuple

import torch
from fairseq.search import BeamSearch
from torch import Tensor

Hyp = Tuple[int, ...]  # a hypothesis: its tokens after the BOS


@dataclass(frozen=True)
class BeamStep:
    """One step of fairseq's beam search, at batch 1."""

    hypotheses: Tuple[Hyp, ...]  # the N hypotheses continued into this step (step 0: N empty ones)
    scores: Tuple[float, ...]  # their cumulative (unnormalized) log-probabilities, fairseq's

    def roots(self) -> Tuple[List[Hyp], List[float]]:
        """The distinct hypotheses and their scores (at step 0 fairseq reads one copy only)."""
        seen, hyps, scores = set(), [], []
        for hyp, score in zip(self.hypotheses, self.scores):
            if hyp not in seen:
                seen.add(hyp)
                hyps.append(hyp)
                scores.append(score)
        return hyps, scores


class RecordingBeamSearch(BeamSearch):
    """fairseq's ``BeamSearch``, unchanged, that also records the hypotheses each step is
    called with (``SequenceGenerator(..., search_strategy=RecordingBeamSearch(tgt_dict))``).
    ``steps`` holds the current sentence's steps; ``take`` hands them over and starts afresh."""

    def __init__(self, tgt_dict):
        super().__init__(tgt_dict)
        self.steps: List[BeamStep] = []

    def step(self, step: int, lprobs, scores: Optional[Tensor], prev_output_tokens: Optional[Tensor] = None,
             original_batch_idxs: Optional[Tensor] = None, candidate_multiple: int = 2):
        bsz, beam, _ = lprobs.size()
        assert bsz == 1, f"the recording covers batch 1 (one sentence per generate call), got {bsz} sentences"
        assert prev_output_tokens is not None, "SequenceGenerator passes the hypotheses' tokens"
        hyps = tuple(tuple(row) for row in prev_output_tokens[:, 1:].tolist())  # N x step, the BOS dropped
        cumulative = scores[0, :, step - 1].tolist() if step > 0 else [0.0] * beam
        self.steps.append(BeamStep(hyps, tuple(cumulative)))
        return super().step(step, lprobs, scores, prev_output_tokens, original_batch_idxs, candidate_multiple)

    def take(self) -> List[BeamStep]:
        steps, self.steps = self.steps, []
        return steps


class TreeDrafter(Protocol):
    """What ``build_tree`` asks of a drafter: next-token log-probabilities per tree node."""

    def start(self, roots: Sequence[Hyp]) -> Tensor:
        """R x V log-probabilities of the token after each root (all roots have one length)."""

    def extend(self, parents: Tensor, tokens: Tensor) -> Tensor:
        """The new level's nodes: row ``parents[i]`` of the last level extended by
        ``tokens[i]``; W x V log-probabilities of the token after each."""


def expand_level(scores: Tensor, lprobs: Tensor, width: int, banned: Sequence[int] = ()
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``width`` best extensions of R nodes (scores R, next-token log-probs R x V) by
    score + log-prob, ``banned`` tokens excluded: their parent rows, tokens and scores (W each)."""
    total = scores.unsqueeze(1) + lprobs.float()  # R x V
    if len(banned) > 0:
        total[:, list(banned)] = float("-inf")
    flat = total.view(-1)
    best = torch.topk(flat, min(width, int(torch.isfinite(flat).sum()))).indices
    vocab = lprobs.size(1)
    return torch.div(best, vocab, rounding_mode="trunc"), best % vocab, flat[best]


def build_tree(drafter: TreeDrafter, roots: Sequence[Hyp], root_scores: Sequence[float], width: int,
               depth: int, banned: Sequence[int] = ()) -> List[List[Hyp]]:
    """The tree's levels: level 0 the roots, level d the W nodes at depth d (see the
    module's docstring), each node as its full hypothesis."""
    levels = [list(roots)]
    scores = torch.tensor(list(root_scores), dtype=torch.float)
    lprobs = drafter.start(roots)
    for d in range(1, depth + 1):
        parents, tokens, scores = expand_level(scores, lprobs, width, banned)
        levels.append([levels[-1][p] + (tok,) for p, tok in zip(parents.tolist(), tokens.tolist())])
        if d < depth:  # the deepest level's own continuations are not drafted
            lprobs = drafter.extend(parents, tokens)
    return levels


def kept_sets(steps: Sequence[BeamStep]) -> List[FrozenSet[Hyp]]:
    return [frozenset(s.hypotheses) for s in steps]


def tree_reach(kept: Sequence[FrozenSet[Hyp]], start: int, levels: Sequence[Sequence[Hyp]]) -> int:
    """How many steps past ``start`` the tree grown at ``start`` can replay: the largest d
    (at most the tree's depth, and short of the search's end) with ``kept[start + d']``
    inside level d' for every d' = 1..d."""
    reach = 0
    while reach + 1 < len(levels) and start + reach + 1 < len(kept):
        if not kept[start + reach + 1] <= set(levels[reach + 1]):
            break
        reach += 1
    return reach


def iteration_steps(reach: Sequence[int], depth: int) -> List[int]:
    """Beam steps per iteration of the scheme with trees of depth ``depth`` (k), given the
    reach of a deeper tree grown at every step (a depth-k tree is its first k levels)."""
    steps, t = [], 0
    while t < len(reach):
        s = 1 + min(depth, reach[t])
        steps.append(s)
        t += s
    return steps
