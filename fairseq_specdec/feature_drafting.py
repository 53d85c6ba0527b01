"""Drafting from the verifier's own states: the drafter keeps one slot per committed
token, built from the verifier's top-layer states that verification hands over
(``observe``). ``FeatureDrafter`` (``specdec_feature_drafter``) drafts k tokens from them
in one forward; ``ChainDrafter`` (``specdec_chain_drafter``) chains k one-token steps."""
from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import Tensor

from fairseq_specdec.drafters import forbidden_tokens, same_encoder, top_tokens


@dataclass
class FeatureDraftState:
    encoder_out: Dict[str, List[Tensor]]  # the source, encoded (the verifier's when shared)
    slots: Tensor  # B x capacity x C fused slot inputs, right-padded
    length: Tensor  # B valid slots per row (= committed tokens after the BOS)
    bound: int  # an upper bound of max(length), kept on the host (no device sync)


class FeatureDrafter:
    """Drafts with a trained ``specdec_feature_drafter`` next to its verifier."""

    def __init__(self, model, tgt_dict, verifier=None):
        self.model = model
        self.reuses_verifier_encoder = verifier is not None and same_encoder(model.encoder, verifier.encoder)
        self.forbidden = forbidden_tokens(tgt_dict)
        self.bos = tgt_dict.eos()  # fairseq decodes from eos

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> FeatureDraftState:
        if self.reuses_verifier_encoder and verifier_encoder_out is not None:
            encoder_out = verifier_encoder_out
        else:
            encoder_out = self.model.encoder.forward_torchscript(net_input)
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
        slots = state.slots
        if bound > slots.size(1):
            slots = torch.cat([slots, slots.new_zeros(slots.size(0), max(bound, 2 * slots.size(1)) - slots.size(1),
                                                      slots.size(2))], dim=1)
        offsets = torch.arange(n, device=counts.device).unsqueeze(0)
        valid = offsets < counts.unsqueeze(1)  # B x n
        rows = torch.arange(counts.size(0), device=counts.device).unsqueeze(1).expand(-1, n)
        slots[rows[valid], (state.length.unsqueeze(1) + offsets)[valid]] = new[valid]
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
        logits[..., self.forbidden.to(logits.device)] = float("-inf")
        return logits


class ChainDrafter(FeatureDrafter):
    """Drafts with a trained ``specdec_chain_drafter``: k steps, each predicting the
    verifier's next state from the slots so far, reading its token through the verifier's
    output projection, and appending (predicted state, token) as a new slot."""

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> FeatureDraftState:
        state = super().start(net_input, verifier_encoder_out)
        bsz = state.slots.size(0)
        bos = torch.full((bsz,), self.bos, dtype=torch.long, device=state.slots.device)
        state.slots[:, :1] = self.model.decoder.start_input(bsz, bos)
        return FeatureDraftState(state.encoder_out, state.slots, state.length + 1, 1)

    def propose(self, state: FeatureDraftState, prefix: Tensor, block_size: int) -> Tensor:
        return self.chain(state, prefix, block_size, confidence=False)[0]

    def propose_with_confidence(self, state: FeatureDraftState, prefix: Tensor, block_size: int):
        """B x k drafts and the drafter's softmax probability of each (B x k)."""
        return self.chain(state, prefix, block_size, confidence=True)

    def chain(self, state: FeatureDraftState, prefix: Tensor, block_size: int, confidence: bool):
        """k chained steps. The slots are left-padded once, so that every row's next
        position is the same column, and the layers keep their keys/values between steps
        (fairseq's incremental state): each step runs one position."""
        decoder = self.model.decoder
        slots, pad = left_aligned(state.slots[:, : prefix.size(1)], state.length)  # B x W x C, B x W
        cache: Dict[str, Dict[str, Tensor]] = {}
        allowed = torch.ones(pad.size(1), pad.size(1), dtype=torch.bool, device=pad.device).tril()
        predicted = decoder.state_head(decoder.run(slots, pad, allowed, state.encoder_out, cache)[:, -1])  # B x C
        no_pad = pad.new_zeros(pad.size(0), 1)
        tokens, probs = [], []
        for i in range(block_size):
            logits = decoder.output_layer(predicted)
            logits[..., self.forbidden.to(logits.device)] = float("-inf")
            if confidence:
                token, prob = top_tokens(logits)
                probs.append(prob)
            else:
                token = logits.argmax(-1)
            tokens.append(token)
            if i + 1 < block_size:
                step = decoder.slot_inputs(predicted.unsqueeze(1), token.unsqueeze(1))  # B x 1 x C
                predicted = decoder.state_head(decoder.run(step, no_pad, None, state.encoder_out, cache)[:, -1])
        return torch.stack(tokens, 1), (torch.stack(probs, 1) if confidence else None)


def left_aligned(slots: Tensor, length: Tensor):
    """Right-padded B x W x C slots (``length`` valid per row) moved to the right end:
    the left-padded slots and their B x W pad mask (True = no slot)."""
    width = slots.size(1)
    cols = torch.arange(width, device=slots.device).unsqueeze(0)
    shift = (width - length).unsqueeze(1)  # B x 1
    pad = cols < shift
    source = (cols - shift).clamp(min=0)  # B x W
    moved = slots.gather(1, source.unsqueeze(-1).expand(-1, -1, slots.size(2)))
    return moved.masked_fill(pad.unsqueeze(-1), 0.0), pad
