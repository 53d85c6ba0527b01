"""A lean forward of fairseq's Transformer decoder layers over their own weights, with a
preallocated key/value cache: the verifier's, and the chain drafter's.

fairseq's incremental path grows each layer's cache with ``torch.cat`` on every forward
and reads per-row lengths from a padding mask; here each layer's keys/values live in a
B x H x L x D buffer allocated once per batch, new entries are written in place at the
row's own offset, and the attention reads the first ``width`` columns under a per-row
mask (the cache itself: ``cache``). The source's keys/values for the cross-attention are
computed once per batch.
Numerically it is the layer's own computation (``test_verifier_cache`` compares it with
fairseq's full forward); only inference (no dropout) is covered.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fairseq_specdec.verification.cache import DecoderCache, KeysValues, widened
from fairseq_specdec.verification.lean_weights import LeanDecoder, LeanLayer

def unsupported_layer_options(layer) -> Optional[str]:
    """What in ``layer`` (a fairseq decoder layer) the lean forward cannot run, as a noun
    phrase for an error message, or None."""
    for name in ("c_attn", "attn_ln", "ffn_layernorm", "w_resid"):
        if getattr(layer, name, None) is not None:
            return (f"NormFormer scaling in its decoder layers (the layer has {name}: "
                    f"--scale-attn/--scale-fc/--scale-heads/--scale-resids)")
    for attn in (layer.self_attn, layer.encoder_attn):
        if attn is not None and (attn.bias_k is not None or attn.add_zero_attn):
            return "attention with a learned key/value bias or zero attention (add_bias_kv/add_zero_attn)"
    return None


def split_heads(x: Tensor, heads: int) -> Tensor:
    """B x n x C -> B x H x n x D."""
    bsz, n, dim = x.shape
    return x.view(bsz, n, heads, dim // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """B x H x n x D -> B x n x C."""
    bsz, heads, n, dim = x.shape
    return x.transpose(1, 2).reshape(bsz, n, heads * dim)


def source_keys_values(layer, encoder_out: Tensor) -> Optional[KeysValues]:
    """The cross-attention's keys and values of the encoder output (S x B x C), B x H x S x D."""
    attn = layer.encoder_attn
    if attn is None:
        return None
    enc = encoder_out.transpose(0, 1)  # B x S x C
    return split_heads(attn.k_proj(enc), attn.num_heads), split_heads(attn.v_proj(enc), attn.num_heads)


def write_block(cache: KeysValues, new: KeysValues, columns: Tensor) -> None:
    """Write the n new keys/values (B x H x n x D) of each row at its columns (B x n), in place."""
    keys, values = cache
    new_keys, new_values = new
    index = columns.view(columns.size(0), 1, -1, 1).expand_as(new_keys)
    keys.scatter_(2, index, new_keys)
    values.scatter_(2, index, new_values)


def layer_forward(layer: LeanLayer, x: Tensor, cache: KeysValues, columns: Tensor, width: int,
                  self_mask: Optional[Tensor], source: Optional[KeysValues], source_mask: Optional[Tensor]) -> Tensor:
    """One decoder layer (its ``LeanLayer`` view) over the new tokens x (B x n x C) of each row.

    Args:
        cache: this layer's key/value buffers (B x H x L x D); the new keys/values are
            written at ``columns`` (B x n) first.
        width: the attention reads columns ``[0, width)``.
        self_mask: B x 1 x n x width, True where a new token may attend (None: everywhere).
        source: the cross-attention's keys/values (``source_keys_values``).
        source_mask: B x 1 x 1 x S, True at real source tokens (None: no padding).
    """
    attn, pre = layer.self_attn, layer.normalize_before
    residual = x
    if pre:
        x = attn.norm(x)
    query, key, value = split_heads(attn.query(x), 3 * attn.heads).chunk(3, dim=1)  # B x H x n x D each
    write_block(cache, (key, value), columns)
    keys, values = cache
    x = F.scaled_dot_product_attention(query, keys[:, :, :width], values[:, :, :width], attn_mask=self_mask,
                                       scale=attn.scaling)
    x = residual + attn.out(merge_heads(x))
    if not pre:
        x = attn.norm(x)

    cross = layer.cross_attn
    if cross is not None and source is not None:
        residual = x
        if pre:
            x = cross.norm(x)
        query = split_heads(cross.query(x), cross.heads)
        x = F.scaled_dot_product_attention(query, source[0], source[1], attn_mask=source_mask, scale=cross.scaling)
        x = residual + cross.out(merge_heads(x))
        if not pre:
            x = cross.norm(x)

    residual = x
    if pre:
        x = layer.final_norm(x)
    x = residual + layer.fc2(layer.activation(layer.fc1(x)))
    if not pre:
        x = layer.final_norm(x)
    return x


def source_cache(decoder, encoder_out: Dict[str, List[Tensor]]) -> Tuple[List[Optional[KeysValues]], Optional[Tensor]]:
    """The cross-attention's keys/values of a fairseq encoder output, per layer (B x H x S x D;
    None for a layer without cross-attention), and the source mask (B x 1 x 1 x S, True at
    real tokens; None: no padding)."""
    enc = encoder_out["encoder_out"][0]  # S x B x C
    bsz = enc.size(1)
    pad = encoder_out["encoder_padding_mask"][0] if len(encoder_out["encoder_padding_mask"]) > 0 else None
    dtype = next(decoder.parameters()).dtype
    source = [source_keys_values(layer, enc.to(dtype)) for layer in decoder.layers]
    return source, None if pad is None else (~pad).view(bsz, 1, 1, -1)


def allocate_cache(decoder, encoder_out: Dict[str, List[Tensor]], capacity: int) -> DecoderCache:
    """An empty ``DecoderCache`` of ``capacity`` entries per row for a fairseq decoder."""
    source, source_mask = source_cache(decoder, encoder_out)
    enc = encoder_out["encoder_out"][0]  # S x B x C
    bsz = enc.size(1)
    dtype = next(decoder.parameters()).dtype
    target = []
    for layer in decoder.layers:
        shape = (bsz, layer.self_attn.num_heads, capacity, layer.self_attn.head_dim)
        target.append((enc.new_zeros(shape, dtype=dtype), enc.new_zeros(shape, dtype=dtype)))
    return DecoderCache(source=source, source_mask=source_mask, target=target,
                        length=torch.zeros(bsz, dtype=torch.long, device=enc.device), bound=0)


def run_block(lean: LeanDecoder, x: Tensor, cache: DecoderCache, width: Optional[int] = None) -> Tensor:
    """A decoder's layers (then its final norm and output-dimension projection), read through
    its ``LeanDecoder`` view, over a block of n new inputs per row (B x n x C, embedded),
    written at each row's ``cache.length``; input i of a row sees its committed entries and
    inputs 0..i.

    ``width``: the cache columns the attention reads (static buffers: all of them); by
    default the host-side bound plus n, after making room for them."""
    n = x.size(1)
    if width is None:
        cache.reserve(n)
        width = cache.bound + n
    columns = cache.length.unsqueeze(1) + torch.arange(n, device=x.device)  # B x n
    self_mask = (torch.arange(width, device=x.device).view(1, 1, -1) <= columns.unsqueeze(2)).unsqueeze(1)
    for layer, target, source in zip(lean.layers, cache.target, cache.source):
        x = layer_forward(layer, x, target, columns, width, self_mask, source, cache.source_mask)
    if lean.final_norm is not None:
        x = lean.final_norm(x)
    if lean.project_out is not None:
        x = lean.project_out(x)
    return x
