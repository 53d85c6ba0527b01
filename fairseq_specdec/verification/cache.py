"""The key/value cache of a lean decoder forward (the verifier's, and the chain
drafter's): per layer, the source's keys/values for the cross-attention, computed once
per batch, and the target positions' in a preallocated buffer written in place at each
row's own offset (``lean_layers`` fills and reads it)."""
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import torch
from torch import Tensor

KeysValues = Tuple[Tensor, Tensor]  # B x H x T x D each


def widened(buffer: Tensor, dim: int, needed: int) -> Tensor:
    """``buffer`` if its size along ``dim`` holds ``needed``, else a copy grown with zeros to
    at least twice that size (so that growing row by row stays amortized)."""
    size = buffer.size(dim)
    if needed <= size:
        return buffer
    shape = list(buffer.shape)
    shape[dim] = max(needed, 2 * size) - size
    return torch.cat([buffer, buffer.new_zeros(shape)], dim)


@dataclass
class DecoderCache:
    """A batch's per-layer keys/values: the source's for the cross-attention (computed
    once) and the target positions' (preallocated B x H x L x D, written in place).
    Row b's committed entries are its first ``length[b]`` columns; anything written past
    them (a block's rejected part) is overwritten by the next block."""

    source: List[Optional[KeysValues]]  # per layer, B x H x S x D; None: no cross-attention
    source_mask: Optional[Tensor]  # B x 1 x 1 x S, True at real source tokens; None: no padding
    target: List[KeysValues]  # per layer, B x H x L x D
    length: Tensor  # B committed entries per row
    bound: int  # on the host: an upper bound of max(length)

    @property
    def capacity(self) -> int:
        return self.target[0][0].size(2)

    def select(self, rows: Tensor) -> "DecoderCache":
        return replace(
            self,
            source=[None if kv is None else (kv[0][rows], kv[1][rows]) for kv in self.source],
            source_mask=None if self.source_mask is None else self.source_mask[rows],
            target=[(keys[rows], values[rows]) for keys, values in self.target],
            length=self.length[rows],
        )

    def commit(self, counts: Tensor, block: int, max_length: Optional[int] = None) -> None:
        """Keep the first ``counts[b]`` entries of row b's last block (of ``block`` entries);
        ``max_length``, the longest row after this commit when the caller has read it,
        tightens the bound (otherwise it grows by the block)."""
        self.length = self.length + counts
        self.bound = max_length if max_length is not None else min(self.bound + block, self.capacity)

    def reserve(self, block: int) -> None:
        """Make room for a block of ``block`` entries past the bound (grows on the host's word)."""
        needed = self.bound + block
        self.target = [(widened(k, 2, needed), widened(v, 2, needed)) for k, v in self.target]
