"""The feature drafter's training layout (see ``fairseq_specdec.models.feature_layout`` for
the slots and blocks): the k-token target of every cut point, the teacher-forced verifier
positions that score them, and the cut points drafted per batch. Pure tensor functions."""
import torch
from torch import Tensor


def training_block_targets(target: Tensor, block_size: int, pad: int) -> Tensor:
    """For every cut m of a right-padded target ``y_1..y_T`` (B x T), the k tokens
    ``y_{m+1}..y_{m+k}``: B x T x k, pad past each sentence's eos (and for cuts past it)."""
    bsz, length = target.shape
    padded = torch.cat([target, target.new_full((bsz, block_size), pad)], dim=1)
    index = torch.arange(length, device=target.device).unsqueeze(1) + torch.arange(block_size, device=target.device)
    return padded[:, index]  # B x T x k


def teacher_positions(length: int, block_size: int, device=None) -> Tensor:
    """T x k positions of the teacher-forced verifier output that scores each block
    token: query i of cut m predicts ``y_{m+1+i}``, which the verifier predicts after
    reading ``y_0..y_{m+i}`` (its output at position m+i). Clamped to T-1 (pad there)."""
    index = torch.arange(length, device=device).unsqueeze(1) + torch.arange(block_size, device=device)
    return index.clamp(max=length - 1)


def pick_cuts(length: int, count: int, generator=None) -> Tensor:
    """``count`` distinct cut points of a length-T target, sorted (all T when count is 0
    or at least T)."""
    if count <= 0 or count >= length:
        return torch.arange(length)
    return torch.randperm(length, generator=generator)[:count].sort().values
