"""Drafting from the verifier's own states: the drafter keeps one slot per committed
token, built from the verifier's top-layer states that verification hands over
(``observe``). ``FeatureDrafter`` (``specdec_feature_drafter``) drafts k tokens from them
in one forward; ``chain.ChainDrafter`` chains k one-token steps."""
from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import Tensor

from fairseq_specdec.drafting.base import TrainedDrafter, encode_source, top_tokens
from fairseq_specdec.verification.cache import widened


@dataclass
class FeatureDraftState:
    encoder_out: Dict[str, List[Tensor]]  # the source, encoded (the verifier's when shared)
    slots: Tensor  # B x capacity x C fused slot inputs, right-padded
    length: Tensor  # B valid slots per row (= committed tokens after the BOS)
    bound: int  # an upper bound of max(length), kept on the host (no device sync)


class FeatureDrafter(TrainedDrafter):
    """Drafts with a trained ``specdec_feature_drafter`` next to its verifier."""

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> FeatureDraftState:
        encoder_out = encode_source(self, net_input, verifier_encoder_out)
        src = net_input["src_tokens"]
        dim = self.model.decoder.embed_tokens.embedding_dim
        dtype = next(self.model.parameters()).dtype
        slots = torch.zeros(src.size(0), 16, dim, dtype=dtype, device=src.device)
        return FeatureDraftState(encoder_out, slots, torch.zeros(src.size(0), dtype=torch.long, device=src.device), 0)

    def observe(self, state: FeatureDraftState, states: Tensor, tokens: Tensor, counts: Tensor) -> FeatureDraftState:
        """Add a slot for each committed token: verifier state ``states[:, i]`` (after the
        input at block position i) fused with the token committed after it, ``tokens[:, i]``,
        for ``i < counts[b]``."""
        n = states.size(1)
        new = self.model.decoder.slot_inputs(states, tokens[:, :n])  # B x n x C
        bound = state.bound + n
        slots = widened(state.slots, 1, bound)
        # all n are written (no read back to the host); those past counts[b] lie beyond the row's length
        columns = state.length.unsqueeze(1) + torch.arange(n, device=counts.device)  # B x n
        slots.scatter_(1, columns.unsqueeze(-1).expand_as(new), new)
        return FeatureDraftState(state.encoder_out, slots, state.length + counts, bound)

    def select(self, state: FeatureDraftState, rows: Tensor) -> FeatureDraftState:
        encoder_out = self.model.encoder.reorder_encoder_out(state.encoder_out, rows)
        return FeatureDraftState(encoder_out, state.slots[rows], state.length[rows], state.bound)

    def max_positions(self) -> int:
        return 1 << 30  # no positional embeddings

    def propose(self, state: FeatureDraftState, prefix: Tensor, block_size: int) -> Tensor:
        """B x k drafts; ``prefix`` (B x P, BOS first, left-padded) bounds the slots to read."""
        return self.logits(state, prefix, block_size).argmax(-1)

    def propose_with_confidence(self, state: FeatureDraftState, prefix: Tensor, block_size: int):
        """``propose``'s B x k tokens and the drafter's softmax probability of each (B x k)."""
        return top_tokens(self.logits(state, prefix, block_size))

    def logits(self, state: FeatureDraftState, prefix: Tensor, block_size: int) -> Tensor:
        width = prefix.size(1) - 1  # most committed tokens of any row
        slots = state.slots[:, :width]
        slot_pad = torch.arange(width, device=prefix.device).unsqueeze(0) >= state.length.unsqueeze(1)
        logits = self.model.decoder.forward_block(slots, slot_pad, block_size, state.encoder_out)  # B x k x V
        return self.forbid(logits)
