"""Spec-Verification's model side: score a block of tokens in ONE forward of a stock
fairseq Transformer decoder over its incremental key/value cache, and trim the cache.

fairseq's ``TransformerDecoder.forward`` in incremental mode only reads the last token,
so the block forward below drives the decoder's own modules (embeddings, positions,
layers with their ``MultiheadAttention`` caches, output projection) with a causal mask
over the new tokens. The cache lives in fairseq's incremental state, left-padded: row b
holds its ``cache_len[b]`` valid entries in the last columns, the rest is masked out
through the attention's ``prev_key_padding_mask``.
"""
from typing import Dict, List, Optional

import torch
from fairseq.models.transformer import TransformerDecoderBase
from torch import Tensor

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]


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


class BlockVerifier:
    """Runs the verifier decoder over several new tokens per row at once."""

    def __init__(self, model, temperature: float = 1.0):
        check_verifier(model)
        self.model = model
        self.decoder: TransformerDecoderBase = model.decoder
        self.temperature = temperature
        self._position_table: Optional[Tensor] = None  # 1 x L x C

    def position_embeddings(self, abs_positions: Tensor) -> Optional[Tensor]:
        """Positional embeddings for absolute target positions (0 = the BOS slot): B x n x C."""
        embed_positions = self.decoder.embed_positions
        if embed_positions is None:
            return None
        needed = int(abs_positions.max()) + 1
        table = self._position_table
        if table is None or table.size(1) < needed or table.device != abs_positions.device:
            # learned positions end at max_positions; drafts past it lie beyond the maximum
            # output length and are never committed, so they may share the last position
            limit = getattr(embed_positions, "max_positions", None) or 2 * needed
            length = min(2 * needed, limit)
            dummy = torch.full((1, length), self.decoder.padding_idx + 1, dtype=torch.long, device=abs_positions.device)
            table = embed_positions(dummy)  # 1 x L x C, row j = position j of a sentence
            self._position_table = table
        clipped = abs_positions.clamp(max=table.size(1) - 1)  # drafts beyond max length are never kept
        return table[0][clipped]

    def forward_block(
        self,
        tokens: Tensor,
        abs_positions: Tensor,
        encoder_out: Dict[str, List[Tensor]],
        incremental_state: IncrementalState,
        cache_width: int,
        return_states: bool = False,
    ):
        """Log-probabilities of the next token after each of ``tokens``: B x n x V (float),
        and with ``return_states`` also the top-layer states they are computed from (B x n x C).

        Appends the n new keys/values to the cache; ``cache_width`` is the cache's current
        number of columns (0 before the first call).
        """
        dec = self.decoder
        n = tokens.size(1)
        x = dec.embed_scale * dec.embed_tokens(tokens)  # B x n x C
        if dec.quant_noise is not None:
            x = dec.quant_noise(x)
        if dec.project_in_dim is not None:
            x = dec.project_in_dim(x)
        positions = self.position_embeddings(abs_positions)
        if positions is not None:
            x = x + positions
        if dec.layernorm_embedding is not None:
            x = dec.layernorm_embedding(x)
        x = dec.dropout_module(x).transpose(0, 1)  # n x B x C

        enc = encoder_out["encoder_out"][0] if len(encoder_out["encoder_out"]) > 0 else None
        enc_mask = encoder_out["encoder_padding_mask"][0] if len(encoder_out["encoder_padding_mask"]) > 0 else None
        # new token i sees every cached column and new tokens 0..i
        causal = torch.ones(n, cache_width + n, dtype=torch.bool, device=tokens.device).triu(cache_width + 1)
        self_attn_mask = torch.zeros(causal.shape, dtype=x.dtype, device=x.device).masked_fill(causal, float("-inf"))
        for layer in dec.layers:
            x, _, _ = layer(x, enc, enc_mask, incremental_state, self_attn_mask=self_attn_mask)
        if dec.layer_norm is not None:
            x = dec.layer_norm(x)
        x = x.transpose(0, 1)  # B x n x C
        if dec.project_out_dim is not None:
            x = dec.project_out_dim(x)
        logits = dec.output_layer(x)
        if self.temperature != 1.0:
            logits = logits.div_(self.temperature)
        lprobs = self.model.get_normalized_probs((logits, None), log_probs=True)
        return (lprobs, x) if return_states else lprobs

    def self_attention_modules(self):
        return [layer.self_attn for layer in self.decoder.layers]


def trim_cache(
    attentions, incremental_state: IncrementalState, cache_len: Tensor, cache_width: int, keep: Tensor
) -> int:
    """Keep, per row, the old valid entries plus the first ``keep[b]`` of the newly appended
    ones; drop the rest (keys/values of rejected drafts). Re-left-aligns rows.

    Args:
        attentions: the decoder layers' self-attention modules.
        cache_len: B valid entries per row before the block forward.
        cache_width: the cache's columns before the block forward.
        keep: B new entries to keep per row.
    Returns the new cache width; ``cache_len + keep`` is the new per-row valid length.
    """
    new_len = cache_len + keep  # B
    new_width = int(new_len.max())
    uniform = bool((keep == keep[0]).all()) and bool((cache_len == cache_len[0]).all())
    if uniform and int(cache_len[0]) == cache_width:
        # no padding anywhere (always the case at batch size 1): a plain cut
        for attn in attentions:
            buf = attn._get_input_buffer(incremental_state)
            buf["prev_key"] = buf["prev_key"][:, :, :new_width]
            buf["prev_value"] = buf["prev_value"][:, :, :new_width]
            if buf.get("prev_key_padding_mask") is not None:
                buf["prev_key_padding_mask"] = buf["prev_key_padding_mask"][:, :new_width]
            attn._set_input_buffer(incremental_state, buf)
        return new_width
    device = cache_len.device
    cols = torch.arange(new_width, device=device).unsqueeze(0)  # 1 x W'
    # row b's valid entries end at old column cache_width + keep[b]
    src = cols + (cache_width + keep - new_width).unsqueeze(1)  # B x W'
    pad_mask = cols < (new_width - new_len).unsqueeze(1)  # B x W': True = no entry
    src = src.clamp(min=0)
    for attn in attentions:
        buf = attn._get_input_buffer(incremental_state)
        key = buf["prev_key"]  # B x H x T x D
        index = src.view(src.size(0), 1, new_width, 1).expand(-1, key.size(1), -1, key.size(3))
        buf["prev_key"] = key.gather(2, index)
        buf["prev_value"] = buf["prev_value"].gather(2, index)
        buf["prev_key_padding_mask"] = pad_mask
        attn._set_input_buffer(incremental_state, buf)
    return new_width
