"""Spec-Verification inside fairseq: a ``SequenceGenerator`` that decodes speculatively.

Each iteration (Xia et al., 2023, Sec. 3.2): the drafter proposes k tokens for every
unfinished sentence in one forward; the verifier scores the last committed token plus
the k drafts in ONE forward over its key/value cache; the longest acceptable draft
prefix is kept (``accept_drafts``) and the verifier's top-1 appended (with ``sampling``:
speculative sampling, ``speculative_sampling.sample_block``); finished sentences leave
the batch. The iteration reads one small tensor back from the device: which rows
finished, and the longest committed length.
"""
import time
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from fairseq_specdec.verification.acceptance import Verdict, accept_drafts, plan_commit
from fairseq_specdec.decoding.committed import CommittedTokens
from fairseq_specdec.drafting.policy import DraftPolicy
from fairseq_specdec.drafting.base import NoDrafter
from fairseq_specdec.decoding.generator_base import BlockwiseGenerator, read_finished, unfinished_rows
from fairseq_specdec.decoding.output_rules import OutputRules
from fairseq_specdec.verification.speculative_sampling import (
    SamplingRule, block_uniforms, draw_uniforms, sample_block, sampling_candidates)
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import BatchTally, DecodingStats
from fairseq_specdec.verification.verifier import StaticVerifier, Verifier


class SpeculativeGenerator(BlockwiseGenerator):
    """Speculative decoding with a drafter and the (single) verifier model.

    Takes ``SequenceGenerator``'s options (max_len_a/b, min_len, lenpen, unkpen,
    temperature, no_repeat_ngram_size, ...) and ``generate``'s ``prefix_tokens``
    (``output_rules``), and returns hypotheses in its format. With ``beta=1`` the output
    equals greedy decoding (``--beam 1``) with the same verifier; with ``sampling`` it is
    distributed as fairseq's ``--sampling --beam 1`` (Leviathan et al., 2023).
    """

    def __init__(
        self,
        models,
        tgt_dict,
        drafter,
        block_size: int,
        beta: int = 1,
        tau: float = 1.0,
        stats: Optional[DecodingStats] = None,
        graphs: Optional[GraphOptions] = None,
        adaptive: bool = False,
        sampling: Optional[SamplingRule] = None,
        **kwargs,
    ):
        """``adaptive``: draft up to ``block_size`` tokens per iteration, as many as pay on
        this machine (``drafting.policy``), k = 0 (a greedy step) included; otherwise exactly
        ``block_size``. Lossless either way. ``sampling``: sample (fairseq's --sampling)
        instead of decoding greedily. The options are checked where they are planned
        (``decoding.plan.DecodingPlan``)."""
        super().__init__(models, tgt_dict, block_size, stats=stats, **kwargs)
        self.drafter = drafter
        self.beta = beta
        self.tau = tau
        self.sampling = sampling
        self.policy = DraftPolicy(block_size) if adaptive and not isinstance(drafter, NoDrafter) else None
        # a greedy step's block is observed when drafting resumes, all such blocks in one forward;
        # a drafter over recorded graphs (fixed shapes) observes each block at once instead
        self.observe_later = self.policy is not None and not getattr(drafter, "static", False)
        model = self.model.single_model
        if graphs is None:
            self.verifier = Verifier(model, temperature=self.temperature)
        else:
            check_graph_device(model, graphs)
            self.verifier = StaticVerifier(model, temperature=self.temperature, options=graphs)

    def _decode(self, net_input, committed: CommittedTokens, max_len: int, rules: Optional[OutputRules]) -> None:
        device = committed.tokens.device
        stats, k = self.stats, self.block_size
        tally = BatchTally(k, device)
        with stats.timed("verifier", device):
            state = self.verifier.start(net_input, capacity=max_len + k + 2)
        drafting = None  # the drafter starts at the batch's first drafting iteration (a greedy batch never starts it)
        if not self.observe_later:
            with stats.timed("drafter", device):
                drafting = self.drafter.start(net_input, verifier_encoder_out=state.encoder_out)
        active = torch.arange(committed.tokens.size(0), device=device)
        offsets = torch.arange(k + 1, device=device).unsqueeze(0)
        longest = 1  # on the host: the active rows' longest committed length (BOS included), or more
        pending = Unobserved()  # verified blocks the drafter has not seen (greedy iterations)
        # sampling: one uniform per row and output step (0 .. max_len), whatever the drafts
        uniforms = None if self.sampling is None else draw_uniforms(committed.tokens.size(0), max_len + 1, device)
        while active.numel() > 0:
            began, pending.flush_seconds = time.perf_counter(), 0.0
            with stats.timed("drafter", device):
                drafting, drafts, confidence = self._draft(drafting, pending, committed, active, longest, net_input,
                                                           state.encoder_out)
            n = drafts.size(1)
            # row (b, i) of the block predicts output step length - 1 + i (the BOS is not an output)
            steps = (committed.length[active] - 1).unsqueeze(1) + offsets[:, : n + 1]
            if rules is not None and n > 0:
                drafts = rules.with_forced_drafts(active, drafts, steps[:, :n])
            with stats.timed("verifier", device):
                lprobs, states = self.verifier.score(state, committed.last_token(active), drafts)
            with stats.timed("other", device):
                block = None if rules is None else rules.block(committed, active, longest, drafts, steps)
                self._constrain(lprobs, steps, max_len, may_reach_max_len=longest - 1 + n >= max_len, rules=block)
                plan = plan_commit(drafts, self._verdict(lprobs, drafts, uniforms, active, steps), self.eos)
                token_lprobs = lprobs.gather(2, plan.tokens.unsqueeze(-1)).squeeze(-1)
                committed.append(active, plan.tokens, token_lprobs, plan.count)
                tally.record(plan.num_accepted, plan.count, drafted=n)
                finished, longest, total = read_finished(plan.finished, committed.length[active], plan.count)
                self.verifier.commit(state, plan.count, max_length=longest - 1)
            with stats.timed("drafter", device):
                if n == 0 and self.observe_later:
                    pending.add(states, plan.tokens, plan.count)
                else:
                    drafting = self.drafter.observe(drafting, states, plan.tokens, plan.count)
            if self.policy is not None:
                self.policy.record(len(finished), n, total / len(finished),
                                   time.perf_counter() - began - pending.flush_seconds, confidence, plan.num_accepted)
            if any(finished):  # retire them (all of them: the loop ends)
                keep = unfinished_rows(finished, device)
                active = active[keep]
                state = self.verifier.select(state, keep)
                if drafting is not None:
                    drafting = self.drafter.select(drafting, keep)
                pending.select(keep)
        tally.flush(stats)

    def _verdict(self, lprobs: Tensor, drafts: Tensor, uniforms: Optional[Tensor], active: Tensor,
                 steps: Tensor) -> Verdict:
        """The accepted drafts and the token after them: greedy's top-beta/tau rule, or with
        sampling speculative sampling from fairseq's sampling distribution at each position
        (the scores committed stay the constrained log-probs, as fairseq reports them)."""
        if self.sampling is None:
            return accept_drafts(lprobs, drafts, self.beta, self.tau)
        probs, ids = sampling_candidates(lprobs, self.sampling)
        return sample_block(probs, drafts, block_uniforms(uniforms, active, steps), ids)

    def _draft(self, drafting, pending: "Unobserved", committed: CommittedTokens, active: Tensor,
               longest: int, net_input, encoder_out) -> Tuple[Any, Tensor, Optional[Tensor]]:
        """This iteration's drafts (B x n, n = 0 for a greedy step) and, when the policy
        drafted them, their probabilities (B x n); the drafter first starts (on the rows
        still decoding, whose encoder output is ``encoder_out``) and observes the blocks it missed."""
        policy, bsz = self.policy, active.numel()
        k = self.block_size if policy is None else policy.block_for(bsz, in_step=pending.empty)
        if k == 0:
            return drafting, active.new_empty((bsz, 0)), None
        if drafting is None:
            rows = net_input if bsz == net_input["src_tokens"].size(0) else {
                "src_tokens": net_input["src_tokens"][active], "src_lengths": net_input["src_lengths"][active]}
            drafting = self.drafter.start(rows, verifier_encoder_out=encoder_out)
        drafting = pending.flush(self.drafter, drafting)
        prefix = committed.prefix(active, longest)
        if policy is None:
            return drafting, self.drafter.propose(drafting, prefix, k), None
        if getattr(self.drafter, "stepwise", False):
            drafts, confidence = self.drafter.propose_stepwise(drafting, prefix, k, ChainStop(policy, bsz, self.eos))
            return drafting, drafts, confidence
        if hasattr(self.drafter, "propose_with_confidence"):
            drafts, confidence = self.drafter.propose_with_confidence(drafting, prefix, k)
            stop = ChainStop(policy, bsz, self.eos)
            n = next((i + 1 for i in range(k) if not stop(drafts[:, i], confidence[:, i])), k)
            return drafting, drafts[:, :n], confidence[:, :n]
        return drafting, self.drafter.propose(drafting, prefix, k), None


class ChainStop:
    """The policy's stop rule as a drafter's ``keep_going(tokens, probs)`` callback for one
    iteration: it calibrates each step's probabilities and keeps the running reach (each
    row's probability that every draft so far is accepted; 0 after a drafted eos)."""

    def __init__(self, policy: DraftPolicy, batch_size: int, eos: int):
        self.policy, self.batch_size, self.eos = policy, batch_size, eos
        self.reach: Optional[Tensor] = None
        self.expected, self.drafts = 1.0, 0

    def __call__(self, tokens: Tensor, probs: Tensor) -> bool:
        last = self.policy.calibrated(probs)
        self.reach = last if self.reach is None else self.reach * last
        self.drafts += 1
        self.expected += float(self.reach.mean())
        self.reach = self.reach.masked_fill(tokens.eq(self.eos), 0.0)  # nothing after an eos counts
        return self.policy.keep_drafting(self.batch_size, self.drafts, self.reach, last, self.expected)


class Unobserved:
    """The greedy steps' verified blocks (one state and one token per row each) that a
    drafter has not observed yet, kept side by side: it observes them in one forward when
    drafting resumes. Each step's block is kept as it came and the blocks are joined once,
    when read: no copy of the whole waiting width per greedy step."""

    def __init__(self):
        self._states: List[Tensor] = []  # one B x 1 x C per waiting greedy step
        self._tokens: List[Tensor] = []  # one B x 1 per waiting greedy step
        self.flush_seconds = 0.0  # wall time of the last flush (not a cost of that iteration's drafting)

    @property
    def empty(self) -> bool:
        return not self._states

    @property
    def states(self) -> Optional[Tensor]:
        """B x W x C: the W waiting steps' states side by side (None when none waits)."""
        return torch.cat(self._states, 1) if self._states else None

    @property
    def tokens(self) -> Optional[Tensor]:
        """B x W: the tokens committed after those states."""
        return torch.cat(self._tokens, 1) if self._tokens else None

    def add(self, states: Tensor, tokens: Tensor, counts: Tensor) -> None:
        """A greedy step's block: B x 1 states, the B tokens committed after them (``counts`` all 1)."""
        assert states.size(1) == 1, f"a greedy step verifies one position per row, got {states.size(1)}"
        self._states.append(states.clone())  # with CUDA graphs ``states`` is the graph's output memory
        self._tokens.append(tokens[:, :1])

    def select(self, rows: Tensor) -> None:
        if self._states:  # joined once here: the rows leave every waiting block at once
            self._states, self._tokens = [self.states[rows]], [self.tokens[rows]]

    def flush(self, drafter, drafting):
        if not self._states:
            return drafting
        began = time.perf_counter()
        states, tokens = self.states, self.tokens
        counts = torch.full((states.size(0),), states.size(1), dtype=torch.long, device=states.device)
        drafting = drafter.observe(drafting, states, tokens, counts)
        self._states, self._tokens = [], []
        self.flush_seconds = time.perf_counter() - began
        return drafting


class LeanGreedyGenerator(SpeculativeGenerator):
    """Greedy decoding (``--beam 1``'s output) through the verifier's lean forward and
    preallocated cache: speculative decoding with no drafts, one token per iteration
    (with ``sampling``, one sampled token per iteration)."""

    def __init__(self, models, tgt_dict, stats: Optional[DecodingStats] = None,
                 graphs: Optional[GraphOptions] = None, **kwargs):
        super().__init__(models, tgt_dict, NoDrafter(), block_size=0, stats=stats, graphs=graphs, **kwargs)


def check_graph_device(model, graphs: GraphOptions) -> None:
    """CUDA graphs need the verifier on a CUDA device."""
    device = next(model.parameters()).device
    if graphs.capture and device.type != "cuda":
        raise ValueError(f"--cuda-graphs records CUDA graphs, but the verifier is on {device}: "
                         f"decode on a GPU (without --cpu), or drop --cuda-graphs")
