"""Scripted drafters over a known reference output (fairseq's greedy), for the house's key
lossless test: SpecDec's output equals greedy's with a drafter that is always right
(``fairseq_specdec.benchmark.oracle.OracleDrafter``) and with one that is always wrong."""
import torch

from fairseq_specdec.benchmark.oracle import OracleDrafter


class WrongDrafter(OracleDrafter):
    """Drafts, at every position, a token other than the reference's (eos included): the next
    regular symbol after it, wrapping around; nothing it drafts may be accepted."""

    def __init__(self, known, tgt_dict):
        super().__init__(known, tgt_dict.pad(), tgt_dict.eos())
        self.nspecial, self.vocab = tgt_dict.nspecial, len(tgt_dict)

    def propose(self, state, prefix, block_size):
        right = super().propose(state, prefix, block_size)
        return self.nspecial + torch.remainder(right - self.nspecial + 1, self.vocab - self.nspecial)
