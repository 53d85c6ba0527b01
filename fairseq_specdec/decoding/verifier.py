"""Spec-Verification's model side: a stock fairseq Transformer scores a block of tokens
per row in ONE forward over its key/value cache.

The verifier is the counterpart of the drafter interface: ``start`` encodes a batch and
allocates its state, ``score`` runs the last committed token plus the drafts of every row,
``commit`` keeps the first ``counts[b]`` of them in row b's cache, ``select`` keeps some
rows (finished sentences leave). The cache is preallocated (``lean_layers``): entries are
written in place at each row's own offset, and a rejected draft's entry is simply left
beyond the row's length, to be overwritten by the next block. Nothing here reads a value
back to the host.
"""
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch
from fairseq.models.transformer import TransformerDecoderBase
from torch import Tensor

from fairseq_specdec.decoding.lean_layers import DecoderCache, allocate_cache, run_block, unsupported_layer_options


class UnsupportedVerifierError(ValueError):
    pass


def check_verifier(model) -> None:
    """Raise a clear error for verifier decoders the block forward cannot drive."""
    decoder = getattr(model, "decoder", None)
    if not isinstance(decoder, TransformerDecoderBase):
        raise UnsupportedVerifierError(
            f"SpecDec verifies with a fairseq Transformer decoder; this model's decoder is "
            f"{type(decoder).__name__}. Use a checkpoint trained with --arch transformer*."
        )
    if decoder.cross_self_attention:
        raise UnsupportedVerifierError("verifiers trained with --cross-self-attention are not supported")
    if decoder.adaptive_softmax is not None:
        raise UnsupportedVerifierError("verifiers with an adaptive softmax are not supported")
    for layer in decoder.layers:
        reason = unsupported_layer_options(layer)
        if reason is not None:
            raise UnsupportedVerifierError(f"verifiers with {reason} are not supported")


@dataclass
class VerifierState:
    """What the verifier keeps for a batch between iterations (mutable: ``score`` writes
    the cache, ``commit`` advances it)."""

    encoder_out: Dict[str, List[Tensor]]  # fairseq's encoder output of these rows (drafters read it)
    cache: DecoderCache  # keys/values; cache.length[b] = row b's committed tokens (BOS included) minus the last
    block: int = 0  # on the host: tokens per row of the last ``score`` (k + 1)


class Verifier:
    """Scores blocks of tokens with a stock fairseq Transformer (``--arch transformer*``)."""

    def __init__(self, model, temperature: float = 1.0):
        check_verifier(model)
        self.model = model
        self.decoder: TransformerDecoderBase = model.decoder
        self.temperature = temperature
        self._position_table: Optional[Tensor] = None  # L x C

    def start(self, net_input: Dict[str, Tensor], capacity: int) -> VerifierState:
        """Encode the sources and allocate a cache of ``capacity`` entries per row (the
        committed tokens, BOS included, plus one block)."""
        encoder_out = self.model.encoder.forward_torchscript(net_input)
        cache = allocate_cache(self.decoder, encoder_out, capacity)
        self.positions(capacity, cache.length.device)  # built here, once, not inside the loop
        return VerifierState(encoder_out, cache)

    def score(self, state: VerifierState, last_tokens: Tensor, drafts: Tensor) -> Tuple[Tensor, Tensor]:
        """Log-probabilities of the next token after the last committed token (B) and after
        each of the drafts (B x k): B x (k+1) x V (float), and the top-layer states they
        are computed from, B x (k+1) x C. Writes the block's keys/values into the cache."""
        dec = self.decoder
        tokens = torch.cat([last_tokens.unsqueeze(1), drafts], dim=1)  # B x n
        x = dec.embed_scale * dec.embed_tokens(tokens)  # B x n x C
        if dec.project_in_dim is not None:
            x = dec.project_in_dim(x)
        table = self._position_table
        if table is not None:
            positions = state.cache.length.unsqueeze(1) + torch.arange(tokens.size(1), device=tokens.device)
            x = x + table[positions.clamp(max=table.size(0) - 1)]
        if dec.layernorm_embedding is not None:
            x = dec.layernorm_embedding(x)
        x = run_block(dec, x, state.cache)
        logits = dec.output_layer(x)
        if self.temperature != 1.0:
            logits = logits.div_(self.temperature)
        state.block = tokens.size(1)
        return self.model.get_normalized_probs((logits, None), log_probs=True), x

    def commit(self, state: VerifierState, counts: Tensor, max_length: Optional[int] = None) -> None:
        """Keep the first ``counts[b]`` tokens of row b's last block in the cache (the input
        token and the accepted drafts); the other entries lie beyond the row's length.
        ``max_length``, the rows' longest length after this commit when the caller has read
        it, narrows the columns the next block attends over."""
        state.cache.commit(counts, state.block, max_length)

    def select(self, state: VerifierState, rows: Tensor) -> VerifierState:
        """The state of ``rows`` only (sentences still decoding)."""
        return replace(state, encoder_out=self.model.encoder.reorder_encoder_out(state.encoder_out, rows),
                       cache=state.cache.select(rows))

    def positions(self, length: int, device: torch.device) -> None:
        """Build (or widen) the positional embedding table to ``length`` positions (row j =
        position j of a sentence; 0 holds the BOS)."""
        embed_positions = self.decoder.embed_positions
        table = self._position_table
        if embed_positions is None or (table is not None and table.size(0) >= length and table.device == device):
            return
        # learned positions end at max_positions; drafts past it lie beyond the maximum
        # output length and are never committed, so they may share the last position
        limit = getattr(embed_positions, "max_positions", None) or length
        dummy = torch.full((1, min(length, limit)), self.decoder.padding_idx + 1, dtype=torch.long, device=device)
        self._position_table = embed_positions(dummy)[0]
