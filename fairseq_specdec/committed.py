"""The committed tokens of a batch of hypotheses that grow by a different number of
tokens per row and iteration, and their conversion to fairseq's hypothesis dicts."""
from typing import Dict, List

import torch
from torch import Tensor

from fairseq_specdec.blocks import left_pad


class CommittedTokens:
    """Right-padded B x (max_len + 2) buffer: column 0 holds the BOS, then the tokens."""

    def __init__(self, bsz: int, max_len: int, pad: int, bos: int, device: torch.device):
        self.pad = pad
        self.tokens = torch.full((bsz, max_len + 2), pad, dtype=torch.long, device=device)
        self.tokens[:, 0] = bos
        self.lprobs = torch.zeros((bsz, max_len + 2), dtype=torch.float, device=device)
        self.length = torch.ones(bsz, dtype=torch.long, device=device)  # BOS included

    def prefix(self, rows: Tensor) -> Tensor:
        """Left-padded committed prefixes (BOS first) of ``rows``: B x max length."""
        lengths = self.length[rows]
        return left_pad(self.tokens[rows, : int(lengths.max())], lengths, self.pad)

    def last_token(self, rows: Tensor) -> Tensor:
        return self.tokens[rows, self.length[rows] - 1]

    def append(self, rows: Tensor, new_tokens: Tensor, new_lprobs: Tensor, counts: Tensor) -> None:
        """Append the first ``counts[i]`` of ``new_tokens[i]`` (B x m) to row ``rows[i]``."""
        m = new_tokens.size(1)
        offsets = torch.arange(m, device=new_tokens.device).unsqueeze(0)
        valid = offsets < counts.unsqueeze(1)  # B x m
        cols = (self.length[rows].unsqueeze(1) + offsets)[valid]
        row_index = rows.unsqueeze(1).expand(-1, m)[valid]
        self.tokens[row_index, cols] = new_tokens[valid]
        self.lprobs[row_index, cols] = new_lprobs[valid].float()
        self.length[rows] += counts

    def hypothesis(self, row: int, normalize_scores: bool, len_penalty: float) -> List[Dict[str, Tensor]]:
        """fairseq's hypothesis list (one entry) for a finished row; tokens end with eos."""
        n = int(self.length[row])
        tokens = self.tokens[row, 1:n].clone()
        positional_scores = self.lprobs[row, 1:n].clone()
        score = positional_scores.sum()
        if normalize_scores:
            score = score / (tokens.numel() ** len_penalty)
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
