"""Drafter-only decoding, for diagnosis: the Spec-Drafter drafts k tokens at a time and
every draft is committed up to the first eos (no verifier). Reached from
``fairseq-generate`` by passing a drafter checkpoint as ``--path``."""
import torch

from fairseq_specdec.decoding.committed import CommittedTokens
from fairseq_specdec.decoding.drafters import NARDrafter
from fairseq_specdec.decoding.generator_base import BlockwiseGenerator, read_finished, unfinished_rows
from fairseq_specdec.decoding.stats import BatchTally


class DrafterGenerator(BlockwiseGenerator):
    """Iterative blockwise drafting until eos or the maximum length. Its statistics count
    iterations and committed tokens; no draft is verified, so none is "accepted"."""

    def __init__(self, models, tgt_dict, block_size: int, **kwargs):
        if block_size < 1:
            raise ValueError(f"--block-size must be >= 1, got {block_size}")
        super().__init__(models, tgt_dict, block_size, **kwargs)
        self.drafter = NARDrafter(self.model.single_model, tgt_dict)

    def _decode(self, net_input, committed: CommittedTokens, max_len: int) -> None:
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
            self._constrain(lprobs, steps, max_len, may_reach_max_len=longest - 1 + k >= max_len)
            tokens = lprobs.argmax(-1)
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
