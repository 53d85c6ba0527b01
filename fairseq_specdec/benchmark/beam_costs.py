"""Speculative beam search's potential (issue 23, item 1), the model side: the chain
drafter growing a tree from beam hypotheses (``ChainTreeDrafter``), and the costs of one
iteration on this machine (``drafter_iteration``, ``verifier_iteration``, timed by
``interleaved_ms``).

For the measurement the verifier's states of each root's prefix come from a
teacher-forced full forward (``extract_features``, what verification would have computed
at the root's ancestors); the drafter then reads them as in ``drafting.chain``: one slot
per committed token, and one chained slot (its own predicted state, the node's token)
per tree level."""
import time
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fairseq_specdec.benchmark.beam_replay import Hyp, expand_level
from fairseq_specdec.drafting.chain import ChainDrafter, ChainState
from fairseq_specdec.verification.verifier import Verifier


class ChainTreeDrafter:
    """``beam_replay.TreeDrafter`` over a ``ChainDrafter`` and its verifier, for one sentence."""

    def __init__(self, proposer: ChainDrafter, verifier, net_input: Dict[str, Tensor]):
        self.proposer, self.verifier = proposer, verifier
        self.encoder_out = verifier.encoder.forward_torchscript(net_input)  # 1 row
        self.base = proposer.start(net_input, self.encoder_out)  # the BOS slot, committed
        self.bos = proposer.bos
        self.state: ChainState = self.base

    def start(self, roots: Sequence[Hyp]) -> Tensor:
        rows = torch.zeros(len(roots), dtype=torch.long)
        state = self.proposer.select(self.base, rows)
        length = len(roots[0])
        if length > 0:
            tokens = torch.tensor([list(r) for r in roots])  # R x t
            prev = torch.cat([torch.full((len(roots), 1), self.bos), tokens[:, :-1]], dim=1)
            encoder_out = self.verifier.encoder.reorder_encoder_out(self.encoder_out, rows)
            states, _ = self.verifier.decoder.extract_features(prev, encoder_out)  # R x t x C
            state = self.proposer.observe(state, states, tokens, torch.full((len(roots),), length))
        self.state = state
        return self.log_probs(state.predicted)

    def extend(self, parents: Tensor, tokens: Tensor) -> Tensor:
        state = self.proposer.select(self.state, parents)
        self.state = self.proposer.observe(state, state.predicted.unsqueeze(1), tokens.unsqueeze(1),
                                           torch.ones_like(tokens))
        return self.log_probs(self.state.predicted)

    def log_probs(self, predicted: Tensor) -> Tensor:
        """R x V: the drafter's next-token log-probabilities from its predicted states (R x C)."""
        logits = self.proposer.logits(predicted)  # as decoding reads them (the lean view)
        return F.log_softmax(logits.float(), dim=-1)


class VerifierTreeDrafter:
    """``beam_replay.TreeDrafter`` whose log-probabilities are the verifier's own (a
    teacher-forced forward of every node's hypothesis): a perfect drafter, with which a
    width-N tree holds every kept set (the check that recording, tree and replay agree)."""

    def __init__(self, verifier, net_input: Dict[str, Tensor], bos: int):
        self.verifier, self.bos = verifier, bos
        self.encoder_out = verifier.encoder.forward_torchscript(net_input)  # 1 row
        self.hyps: List[Hyp] = []

    def start(self, roots: Sequence[Hyp]) -> Tensor:
        self.hyps = list(roots)
        return self.log_probs()

    def extend(self, parents: Tensor, tokens: Tensor) -> Tensor:
        self.hyps = [self.hyps[p] + (t,) for p, t in zip(parents.tolist(), tokens.tolist())]
        return self.log_probs()

    def log_probs(self) -> Tensor:
        rows = torch.zeros(len(self.hyps), dtype=torch.long)
        prev = torch.tensor([[self.bos, *h] for h in self.hyps])  # R x (t + 1)
        encoder_out = self.verifier.encoder.reorder_encoder_out(self.encoder_out, rows)
        logits, _ = self.verifier.decoder(prev, encoder_out)
        return self.verifier.get_normalized_probs((logits[:, -1:], None), log_probs=True)[:, 0].float()


class Timed:
    """Wraps one method of an object (an instance attribute: fairseq is not patched) and sums its time."""

    def __init__(self, obj, name: str):
        self.inner, self.seconds, self.calls = getattr(obj, name), 0.0, 0
        setattr(obj, name, self)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def interleaved_ms(costs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """The fastest ms of each callable over ``repeats`` rounds that run every callable once,
    in turn (after a warm-up round). The cores are shared with other jobs, which slow any
    call by up to 2x at random: the fastest round is the steadiest estimate of the
    uncontended cost, and interleaving keeps a slow spell from hitting one cost only."""
    times: Dict[str, List[float]] = {name: [] for name in costs}
    for round_ in range(repeats + 1):
        for name, fn in costs.items():
            start = time.perf_counter()
            with torch.no_grad():
                fn()
            if round_ > 0:
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * min(ts) for name, ts in times.items()}


@torch.no_grad()
def drafter_iteration(tree: ChainTreeDrafter, roots: Sequence[Hyp], width: int, depth: int, new_slots: int,
                      banned: Sequence[int]) -> Callable[[], None]:
    """One iteration's drafting from ``roots`` (N, prefix length t >= new_slots):
    the drafter reads the ``new_slots`` verified slots of each root (N rows, after a
    reorder of its cache), then grows a width-W tree of depth k: k times the log-softmax
    and top-W over W x V, k - 1 times a reorder of the W rows' caches and one chained slot."""
    proposer = tree.proposer
    tree.start([r[:-new_slots] for r in roots])  # the state before this iteration's slots
    before = tree.state
    n = len(roots)
    states = torch.randn(n, new_slots, before.predicted.size(-1))  # their values do not change the cost
    tokens = torch.tensor([list(r[-new_slots:]) for r in roots])

    def iteration():
        state = proposer.select(before, torch.arange(n))
        state = proposer.observe(state, states, tokens, torch.full((n,), new_slots))
        tree.state = state
        scores, lprobs = torch.zeros(n), tree.log_probs(state.predicted)
        for d in range(1, depth + 1):
            parents, toks, scores = expand_level(scores, lprobs, width, banned)
            if d < depth:
                lprobs = tree.extend(parents, toks)

    return iteration


@torch.no_grad()
def verifier_iteration(model, net_input: Dict[str, Tensor], roots: Sequence[Hyp], block: int
                       ) -> Callable[[], None]:
    """A lean verifier block forward (``verification.verifier``) of ``block`` new positions
    per root row (N rows, each with its root's prefix cached), with the log-softmax over the
    vocabulary, after a reorder of the N rows' caches: the cost of the tree forward when
    the W * k nodes are spread evenly over the N roots' rows (the tree mask changes which
    columns attend, not the work)."""
    verifier = Verifier(model)
    n, length = len(roots), len(roots[0])
    rows = torch.zeros(n, dtype=torch.long)
    sample_input = {key: value[rows] for key, value in net_input.items()}
    state = verifier.start(sample_input, length + block + 1)
    if length > 0:  # cache the roots' prefixes: BOS, then all tokens but the last
        prefix = torch.tensor([list(r[:-1]) for r in roots], dtype=torch.long)
        verifier.score(state, torch.full((n,), verifier.decoder.dictionary.eos()), prefix)
        verifier.commit(state, torch.full((n,), length), max_length=length)
    last = torch.randint(4, len(verifier.decoder.dictionary), (n,))
    drafts = torch.randint(4, len(verifier.decoder.dictionary), (n, block - 1))

    def iteration():  # scoring overwrites the same entries past the committed ones: no commit
        verifier.score(verifier.select(state, torch.arange(n)), last, drafts)

    return iteration
