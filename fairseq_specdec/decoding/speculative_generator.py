"""Spec-Verification inside fairseq: a ``SequenceGenerator`` that decodes speculatively.

Each iteration (Xia et al., 2023, Sec. 3.2): the drafter proposes k tokens for every
unfinished sentence in one forward; the verifier scores the last committed token plus
the k drafts in ONE forward over its key/value cache; the longest acceptable draft
prefix is kept (``accept_drafts``) and the verifier's top-1 appended; finished sentences
leave the batch. The iteration reads one small tensor back from the device: which rows
finished, and the longest committed length.
"""
from typing import Optional

import torch

from fairseq_specdec.decoding.acceptance import accept_drafts, plan_commit
from fairseq_specdec.decoding.committed import CommittedTokens
from fairseq_specdec.decoding.drafters import NoDrafter
from fairseq_specdec.decoding.generator_base import BlockwiseGenerator, read_finished, unfinished_rows
from fairseq_specdec.decoding.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import BatchTally, DecodingStats
from fairseq_specdec.decoding.verifier import StaticVerifier, Verifier


class SpeculativeGenerator(BlockwiseGenerator):
    """Speculative decoding with a drafter and the (single) verifier model.

    Takes ``SequenceGenerator``'s options (max_len_a/b, min_len, lenpen, unkpen,
    temperature, ...) and returns hypotheses in its format. With ``beta=1`` the output
    equals greedy decoding (``--beam 1``) with the same verifier.
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
        **kwargs,
    ):
        if len(models) != 1:
            raise ValueError(f"SpecDec verifies with one model; got an ensemble of {len(models)}")
        if block_size < 1 and not isinstance(drafter, NoDrafter):
            raise ValueError(f"--block-size must be >= 1, got {block_size}")
        if beta < 1:
            raise ValueError(f"--beta must be >= 1 (1 = lossless), got {beta}")
        if tau < 0:
            raise ValueError(f"--tau must be >= 0, got {tau}")
        super().__init__(models, tgt_dict, block_size, stats=stats, **kwargs)
        self.drafter = drafter
        self.beta = beta
        self.tau = tau
        model = self.model.single_model
        if graphs is None:
            self.verifier = Verifier(model, temperature=self.temperature)
        else:
            check_graph_device(model, graphs)
            self.verifier = StaticVerifier(model, temperature=self.temperature, options=graphs)

    def _decode(self, net_input, committed: CommittedTokens, max_len: int) -> None:
        device = committed.tokens.device
        stats, k = self.stats, self.block_size
        tally = BatchTally(k, device)
        with stats.timed("verifier", device):
            state = self.verifier.start(net_input, capacity=max_len + k + 2)
        with stats.timed("drafter", device):
            drafting = self.drafter.start(net_input, verifier_encoder_out=state.encoder_out)
        active = torch.arange(committed.tokens.size(0), device=device)
        offsets = torch.arange(k + 1, device=device).unsqueeze(0)
        longest = 1  # on the host: the active rows' longest committed length (BOS included), or more
        while active.numel() > 0:
            with stats.timed("drafter", device):
                drafts = self.drafter.propose(drafting, committed.prefix(active, longest), k)  # B x k
            with stats.timed("verifier", device):
                lprobs, states = self.verifier.score(state, committed.last_token(active), drafts)
            with stats.timed("other", device):
                # row (b, i) predicts output step length - 1 + i (the BOS is not an output)
                steps = (committed.length[active] - 1).unsqueeze(1) + offsets
                self._constrain(lprobs, steps, max_len, may_reach_max_len=longest - 1 + k >= max_len)
                plan = plan_commit(drafts, accept_drafts(lprobs, drafts, self.beta, self.tau), self.eos)
                token_lprobs = lprobs.gather(2, plan.tokens.unsqueeze(-1)).squeeze(-1)
                committed.append(active, plan.tokens, token_lprobs, plan.count)
                tally.record(plan.num_accepted, plan.count)
                finished, longest = read_finished(plan.finished, committed.length[active])
                self.verifier.commit(state, plan.count, max_length=longest - 1)
            with stats.timed("drafter", device):
                drafting = self.drafter.observe(drafting, states, plan.tokens, plan.count)
            if any(finished):  # retire them (all of them: the loop ends)
                keep = unfinished_rows(finished, device)
                active = active[keep]
                state = self.verifier.select(state, keep)
                drafting = self.drafter.select(drafting, keep)
        tally.flush(stats)


class LeanGreedyGenerator(SpeculativeGenerator):
    """Greedy decoding (``--beam 1``'s output) through the verifier's lean forward and
    preallocated cache: speculative decoding with no drafts, one token per iteration."""

    def __init__(self, models, tgt_dict, stats: Optional[DecodingStats] = None,
                 graphs: Optional[GraphOptions] = None, **kwargs):
        super().__init__(models, tgt_dict, NoDrafter(), block_size=0, stats=stats, graphs=graphs, **kwargs)


def check_graph_device(model, graphs: GraphOptions) -> None:
    """CUDA graphs need the verifier on a CUDA device."""
    device = next(model.parameters()).device
    if graphs.capture and device.type != "cuda":
        raise ValueError(f"--cuda-graphs records CUDA graphs, but the verifier is on {device}: "
                         f"decode on a GPU (without --cpu), or drop --cuda-graphs")
