"""Drafter-only decoding, for diagnosis: the Spec-Drafter drafts k tokens at a time and
every draft is committed up to the first eos (no verifier). Reached from
``fairseq-generate`` by passing a drafter checkpoint as ``--path``."""
from typing import Optional

import torch
from torch import Tensor

from fairseq_specdec.decoding.committed import CommittedTokens
from fairseq_specdec.drafting.base import NARDrafter
from fairseq_specdec.decoding.generator_base import BlockwiseGenerator, read_finished, unfinished_rows
from fairseq_specdec.decoding.output_rules import OutputRules
from fairseq_specdec.decoding.stats import BatchTally


class DrafterGenerator(BlockwiseGenerator):
    """Iterative blockwise drafting until eos or the maximum length. Its statistics count
    iterations and committed tokens; no draft is verified, so none is "accepted"."""

    def __init__(self, models, tgt_dict, block_size: int, **kwargs):
        super().__init__(models, tgt_dict, block_size, **kwargs)
        self.drafter = NARDrafter(self.model.single_model, tgt_dict)

    def _decode(self, net_input, committed: CommittedTokens, max_len: int, rules: Optional[OutputRules]) -> None:
        device = committed.tokens.device
        stats, k = self.stats, self.block_size
        tally = BatchTally(0, device)
        state = self.drafter.start(net_input)
        active = torch.arange(committed.tokens.size(0), device=device)
        offsets = torch.arange(k, device=device).unsqueeze(0)
        longest = 1
        while active.numel() > 0:
            with stats.timed("drafter", device):
                lprobs = self.drafter.log_probs(state, committed.prefix(active, longest), k)  # B x k x V
            steps = (committed.length[active] - 1).unsqueeze(1) + offsets
            tokens = self._choose(lprobs, steps, committed, active, longest, max_len, rules)
            is_eos = tokens.eq(self.eos)
            finished = is_eos.any(1)
            count = torch.where(finished, is_eos.int().argmax(1) + 1, torch.full_like(active, k))
            committed.append(active, tokens, lprobs.gather(2, tokens.unsqueeze(-1)).squeeze(-1), count)
            tally.record(torch.zeros_like(count), count, drafted=k)
            done, longest, _ = read_finished(finished, committed.length[active], count)
            if any(done):
                keep = unfinished_rows(done, device)
                active = active[keep]
                state = self.drafter.select(state, keep)
        tally.flush(stats)

    def _choose(self, lprobs: Tensor, steps: Tensor, committed: CommittedTokens, active: Tensor, longest: int,
                max_len: int, rules: Optional[OutputRules]) -> Tensor:
        """The argmax of each of the block's positions (B x k log-probs, constrained in place)
        under fairseq's rules; with the n-gram ban one position at a time, each after the
        tokens chosen before it (they are what the ban reads)."""
        may_reach_max_len = longest - 1 + steps.size(1) >= max_len
        if rules is None or rules.ngram_size == 0:
            block = None if rules is None else rules.block(committed, active, longest, steps[:, :0], steps)
            self._constrain(lprobs, steps, max_len, may_reach_max_len, block)
            return lprobs.argmax(-1)
        tokens = steps[:, :0]
        for i in range(steps.size(1)):
            position = lprobs[:, i : i + 1]  # a view: constrained in place
            block = rules.block(committed, active, longest, tokens, steps[:, i : i + 1])
            self._constrain(position, steps[:, i : i + 1], max_len, may_reach_max_len, block)
            tokens = torch.cat([tokens, position.argmax(-1)], dim=1)
        return tokens
