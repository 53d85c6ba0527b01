"""Sequence layout of the feature drafter (``specdec_feature_drafter``): pure tensor
functions, no model.

The feature drafter reads *slots*, one per committed target token after the BOS: slot
j fuses the verifier's top-layer state after reading ``y_0..y_j`` (``y_0`` = BOS) with
the embedding of the token committed next, ``y_{j+1}``. Verification computes those
states anyway, so the drafter never re-reads the prefix through layers of its own
(GliDe/EAGLE-style reuse). After ``m`` committed tokens there are ``m`` slots, and a
*block* of k query positions drafts ``y_{m+1} .. y_{m+k}``.

Slots attend causally to earlier slots (so they never depend on what follows them) and
a block's queries attend to every slot before its cut and to each other. Training
puts every cut point of a target into ONE sequence: T slots, then T blocks of k
queries, block m seeing slots 0..m-1; decoding is the same layout with a single block.
The attention masks of that layout are here (the model applies them); the training
targets and cut points are in ``fairseq_specdec.training.feature_blocks``.
"""
import torch
from torch import Tensor


def block_attention_mask(num_slots: int, cuts: Tensor, block_size: int) -> Tensor:
    """Allowed attention (True) for ``num_slots`` slots followed by one block of
    ``block_size`` queries per cut point; block b sees slots ``< cuts[b]``.

    Returns an L x L bool tensor, L = num_slots + len(cuts) * block_size (query x key).
    """
    device = cuts.device
    n_blocks = cuts.numel()
    length = num_slots + n_blocks * block_size
    slot_ids = torch.arange(num_slots, device=device)
    block_of = torch.arange(n_blocks, device=device).repeat_interleave(block_size)  # Q
    allowed = torch.zeros(length, length, dtype=torch.bool, device=device)
    allowed[:num_slots, :num_slots] = slot_ids.unsqueeze(1) >= slot_ids.unsqueeze(0)  # causal slots
    q = slice(num_slots, length)
    allowed[q, :num_slots] = slot_ids.unsqueeze(0) < cuts[block_of].unsqueeze(1)  # Q x S
    allowed[q, q] = block_of.unsqueeze(1) == block_of.unsqueeze(0)  # a block sees itself
    return allowed


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where attention is allowed, -inf elsewhere (fairseq's ``self_attn_mask``)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))
