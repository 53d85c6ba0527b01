"""Spec-Verification inside fairseq: a ``SequenceGenerator`` that decodes speculatively.

Each iteration (Xia et al., 2023, Sec. 3.2): the drafter proposes k tokens for every
unfinished sentence in one forward; the verifier scores the last committed token plus
the k drafts in ONE forward over its key/value cache; the longest acceptable draft
prefix is kept (``accept_drafts``) and the verifier's top-1 appended; cached entries of
rejected drafts are dropped; finished sentences leave the batch.
"""
from typing import Optional

import torch

from fairseq_specdec.acceptance import accept_drafts, drop_drafts_after_eos, plan_commit
from fairseq_specdec.committed import CommittedTokens
from fairseq_specdec.generator_base import BlockwiseGenerator
from fairseq_specdec.stats import DecodingStats
from fairseq_specdec.verifier import BlockVerifier, trim_cache


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
        **kwargs,
    ):
        if len(models) != 1:
            raise ValueError(f"SpecDec verifies with one model; got an ensemble of {len(models)}")
        if beta < 1:
            raise ValueError(f"--beta must be >= 1 (1 = lossless), got {beta}")
        if tau < 0:
            raise ValueError(f"--tau must be >= 0, got {tau}")
        super().__init__(models, tgt_dict, block_size, stats=stats, **kwargs)
        self.drafter = drafter
        self.beta = beta
        self.tau = tau
        self.verifier = BlockVerifier(self.model.single_model, temperature=self.temperature)

    def _decode(self, net_input, committed: CommittedTokens, max_len: int, finalized) -> None:
        verifier_model = self.model.single_model
        device = committed.tokens.device
        stats, k = self.stats, self.block_size
        with stats.timed("verifier", device):
            encoder_out = verifier_model.encoder.forward_torchscript(net_input)
        with stats.timed("drafter", device):
            drafter_state = self.drafter.start(net_input, verifier_encoder_out=encoder_out)
        attentions = self.verifier.self_attention_modules()
        incremental_state = {}
        active = torch.arange(committed.tokens.size(0), device=device)
        cache_len = torch.zeros_like(active)
        cache_width = 0
        offsets = torch.arange(k + 1, device=device).unsqueeze(0)

        while active.numel() > 0:
            with stats.timed("drafter", device):
                drafts = self.drafter.propose(drafter_state, committed.prefix(active), k)  # B x k
                drafts = drop_drafts_after_eos(drafts, self.eos)
            with stats.timed("verifier", device):
                last = committed.last_token(active).unsqueeze(1)
                positions = (committed.length[active] - 1).unsqueeze(1) + offsets[:, : drafts.size(1) + 1]
                lprobs, states = self.verifier.forward_block(
                    torch.cat([last, drafts], dim=1), positions, encoder_out, incremental_state, cache_width,
                    return_states=True,
                )  # B x (k+1) x V, B x (k+1) x C
            with stats.timed("other", device):
                # the token after position p is output step p (position 0 holds the BOS)
                self._constrain(lprobs, positions, max_len)
                plan = plan_commit(drafts, accept_drafts(lprobs, drafts, self.beta, self.tau), self.eos)
                token_lprobs = lprobs.gather(2, plan.tokens.unsqueeze(-1)).squeeze(-1)
                committed.append(active, plan.tokens, token_lprobs, plan.count)
                stats.record_iteration(plan.num_accepted, plan.count)
            with stats.timed("drafter", device):
                drafter_state = self.drafter.observe(drafter_state, states, plan.tokens, plan.count)
            with stats.timed("other", device):
                # the cache keeps the input token and the accepted drafts: plan.count entries
                cache_width = trim_cache(attentions, incremental_state, cache_len, cache_width, plan.count)
                cache_len = cache_len + plan.count
                if bool(plan.finished.any()):
                    self._finalize(committed, active[plan.finished].tolist(), finalized)
                    keep = (~plan.finished).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    active, cache_len = active[keep], cache_len[keep]
                    verifier_model.decoder.reorder_incremental_state_scripting(incremental_state, keep)
                    encoder_out = verifier_model.encoder.reorder_encoder_out(encoder_out, keep)
                    drafter_state = self.drafter.select(drafter_state, keep)
