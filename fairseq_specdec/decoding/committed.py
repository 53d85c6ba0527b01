"""The committed tokens of a batch of hypotheses that grow by a different number of
tokens per row and iteration, and their conversion to fairseq's hypothesis dicts."""
from typing import Dict, List, Optional

import torch
from torch import Tensor



class CommittedTokens:
    """Right-padded B x (max_len + 2 + block) buffer: column 0 holds the BOS, then the
    tokens; a whole block may be written past a row's last token (only ``length`` counts)."""

    def __init__(self, bsz: int, max_len: int, block: int, pad: int, bos: int, device: torch.device):
        self.pad = pad
        self.tokens = torch.full((bsz, max_len + 2 + block), pad, dtype=torch.long, device=device)
        self.tokens[:, 0] = bos
        self.lprobs = torch.zeros(self.tokens.shape, dtype=torch.float, device=device)
        self.length = torch.ones(bsz, dtype=torch.long, device=device)  # BOS included

    def prefix(self, rows: Tensor, width: int) -> Tensor:
        """Left-padded committed prefixes (BOS first) of ``rows``: B x width, where
        ``width`` >= their longest length (a bound the caller keeps on the host)."""
        return left_pad(self.tokens[rows, :width], self.length[rows], self.pad, width)

    def last_token(self, rows: Tensor) -> Tensor:
        return self.tokens[rows, self.length[rows] - 1]

    def append(self, rows: Tensor, new_tokens: Tensor, new_lprobs: Tensor, counts: Tensor) -> None:
        """Append the first ``counts[i]`` of ``new_tokens[i]`` (B x m) to row ``rows[i]``
        (all m are written; those past ``counts[i]`` lie beyond the row's length)."""
        m = new_tokens.size(1)
        cols = self.length[rows].unsqueeze(1) + torch.arange(m, device=new_tokens.device)  # B x m
        index = rows.unsqueeze(1).expand(-1, m)
        self.tokens.index_put_((index, cols), new_tokens)
        self.lprobs.index_put_((index, cols), new_lprobs.float())
        self.length[rows] += counts

    def hypotheses(self, normalize_scores: bool, len_penalty: float) -> List[List[Dict[str, Tensor]]]:
        """fairseq's hypothesis list (one entry per row) for every row, all finished; the
        tokens end with eos. Reads the lengths from the device once."""
        return [self._hypothesis(row, n, normalize_scores, len_penalty)
                for row, n in enumerate(self.length.tolist())]

    def _hypothesis(self, row: int, n: int, normalize_scores: bool, len_penalty: float):
        tokens = self.tokens[row, 1:n].clone()
        positional_scores = self.lprobs[row, 1:n].clone()
        score = positional_scores.sum()
        if normalize_scores:
            score = score / ((n - 1) ** len_penalty)
        empty = torch.empty(0)
        return [
            {
                "tokens": tokens,
                "score": score,
                "attention": empty,
                "alignment": empty,
                "positional_scores": positional_scores,
            }
        ]


def left_pad(rows: Tensor, lengths: Tensor, pad: int, width: Optional[int] = None) -> Tensor:
    """Move each row's first ``lengths[i]`` tokens to the right end of a B x width tensor
    (``width`` >= max(lengths); by default max(lengths), read from the device)."""
    if width is None:
        width = int(lengths.max())
    cols = torch.arange(width, device=rows.device).unsqueeze(0)  # 1 x W
    src = cols - (width - lengths).unsqueeze(1)  # B x W: source column of each output column
    moved = rows.gather(1, src.clamp(min=0, max=rows.size(1) - 1))
    return torch.where(src >= 0, moved, torch.full_like(moved, pad))
