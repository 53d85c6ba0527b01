"""Block construction for Spec-Drafter training: pure tensor functions, no model.

The drafter's decoder reads the committed target prefix followed by k query positions
and predicts the next k tokens. For training, each target sentence is cut at a point
``c``; the prefix is ``[eos] + y[:c]`` (fairseq starts decoding from eos) and the block
targets are ``y[c:c+k]`` (EOS included where the sentence ends, pad beyond).

Prefixes are LEFT-padded so that the k query positions are always the last k columns
of the decoder input, for every row of a batch. fairseq's positional embeddings count
positions from the first non-pad token, so left padding leaves positions intact.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from fairseq_specdec.decoding.committed import left_pad


class BlockBatch(NamedTuple):
    prefix: Tensor  # B x P, left-padded, starts with eos (the decoding BOS)
    block_target: Tensor  # B x k, the next k tokens, pad beyond the sentence's eos


def sample_cut_points(target_lengths: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform cut point per sentence in ``[0, n - 1]`` where ``n`` counts the target's eos.

    A cut at ``n - 1`` leaves only the eos to predict: the drafter must learn to stop.
    """
    assert bool((target_lengths >= 1).all()), "every target must hold at least its eos"
    u = torch.rand(target_lengths.shape, generator=generator)  # on CPU: reproducible everywhere
    lengths = target_lengths.cpu()
    cut = (u * lengths.double()).long()
    return torch.minimum(cut, lengths - 1).to(target_lengths.device)


def make_block_batch(target: Tensor, cut: Tensor, block_size: int, pad: int, eos: int) -> BlockBatch:
    """Build left-padded prefixes and k-token block targets from right-padded targets.

    Args:
        target: B x T right-padded targets, each ending with eos (fairseq's ``sample["target"]``).
        cut: B cut points, ``0 <= cut[i] < len(target[i])``.
        block_size: k, the number of query positions.
    """
    assert block_size >= 1, f"block size must be >= 1, got {block_size}"
    lengths = target.ne(pad).sum(1)  # B
    assert bool((cut >= 0).all()) and bool((cut < lengths).all()), "cut points must lie inside each target"
    bsz = target.size(0)
    # prefix rows: eos followed by target[:cut]
    shifted = torch.cat([target.new_full((bsz, 1), eos), target], dim=1)  # B x (T+1)
    prefix = left_pad(shifted, cut + 1, pad)
    # block targets: target[cut : cut + k], pad past the sentence
    offsets = cut.unsqueeze(1) + torch.arange(block_size, device=target.device).unsqueeze(0)  # B x k
    inside = offsets < lengths.unsqueeze(1)
    padded_target = torch.cat([target, target.new_full((bsz, block_size), pad)], dim=1)
    block_target = padded_target.gather(1, offsets).masked_fill(~inside, pad)
    return BlockBatch(prefix=prefix, block_target=block_target)
