"""Drafters: whatever proposes k candidate tokens for a batch of committed prefixes.

Proposing and verifying are separate roles. The speculative generator only needs
``start`` (once per batch), ``select`` (when finished sentences leave the batch) and
``propose``; any object with these three methods can draft, the Spec-Drafter below
being the one the paper trains.
"""
from typing import Any, Dict

import torch
from torch import Tensor


class NARDrafter:
    """Drafts with a trained Spec-Drafter (``specdec_drafter`` model): one decoder
    forward over prefix + k [MASK] queries, argmax per query position."""

    def __init__(self, model, tgt_dict):
        self.model = model
        # tokens a draft may never hold: specials, and the filler symbols fairseq-preprocess
        # adds to round the dictionary size (madeupword0000, ...)
        fillers = {i for i, sym in enumerate(tgt_dict.symbols) if sym.startswith("madeupword")}
        self.forbidden = torch.tensor(sorted({tgt_dict.pad(), tgt_dict.bos(), tgt_dict.unk()} | fillers))

    def start(self, net_input: Dict[str, Tensor]) -> Any:
        """Encode the source once per batch; the result is this drafter's state."""
        src_len, limit = net_input["src_tokens"].size(1), self.model.encoder.max_positions()
        if src_len > limit:
            raise ValueError(
                f"a source of {src_len} tokens is longer than the drafter's encoder positions ({limit}); "
                f"filter long sources (--max-source-positions {limit} --skip-invalid-size-inputs-valid-test) "
                f"or use a drafter trained with longer positions"
            )
        return self.model.encoder.forward_torchscript(net_input)

    def select(self, encoder_out: Any, rows: Tensor) -> Any:
        """Keep only ``rows`` of the batch (unfinished sentences)."""
        return self.model.encoder.reorder_encoder_out(encoder_out, rows)

    def max_positions(self) -> int:
        """The longest decoder input (prefix + queries) the drafter's positions can hold."""
        return self.model.decoder.max_positions()

    def propose(self, encoder_out: Any, prefix: Tensor, block_size: int) -> Tensor:
        """B x k drafted tokens after each left-padded prefix (B x P, starting with eos)."""
        logits = self.log_probs(encoder_out, prefix, block_size)
        return logits.argmax(-1)

    def log_probs(self, encoder_out: Any, prefix: Tensor, block_size: int) -> Tensor:
        logits = self.model.decoder(prefix, encoder_out, block_size)  # B x k x V
        logits[..., self.forbidden.to(logits.device)] = float("-inf")
        return torch.log_softmax(logits.float(), dim=-1)
