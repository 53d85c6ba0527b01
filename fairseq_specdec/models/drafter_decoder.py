"""The Spec-Drafter's shallow non-autoregressive decoder."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fairseq.models.transformer import TransformerDecoderBase
from torch import Tensor


class SpecDrafterDecoder(TransformerDecoderBase):
    """Reads the committed prefix and k query positions; predicts k tokens in one pass.

    Spec-Drafter (Xia et al., 2023, Sec. 3.1). Built from fairseq's Transformer decoder
    (layers, positions, output projection); only the forward differs: self-attention is
    not causal, and the query positions carry a learned [MASK] embedding (optionally plus
    a monotone copy of the source token embeddings) instead of token embeddings. Queries
    that glancing training reveals carry their ground-truth token instead.
    """

    def __init__(self, cfg, dictionary, embed_tokens, src_embedding_copy: bool = False):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=False)
        self.src_embedding_copy = src_embedding_copy
        self.mask_embedding = nn.Parameter(torch.empty(embed_tokens.embedding_dim))
        nn.init.normal_(self.mask_embedding, mean=0.0, std=embed_tokens.embedding_dim**-0.5)
        # any non-pad index: it only makes positional embeddings count the query slots
        self.query_placeholder = dictionary.unk()

    def forward(
        self,
        prefix: Tensor,
        encoder_out: Dict[str, List[Tensor]],
        block_size: int,
        revealed: Optional[Tensor] = None,
    ) -> Tensor:
        """Logits for the k query positions.

        Args:
            prefix: B x P committed tokens, left-padded, starting with eos.
            block_size: k, the number of query positions appended after the prefix.
            revealed: optional B x k ground-truth tokens shown at some queries (glancing);
                pad where the query stays masked.
        Returns: B x k x V logits.
        """
        bsz, k = prefix.size(0), block_size
        queries = revealed if revealed is not None else prefix.new_full((bsz, k), self.padding_idx)
        masked = queries.eq(self.padding_idx)  # B x k
        tokens = torch.cat([prefix, queries.masked_fill(masked, self.query_placeholder)], dim=1)  # B x (P+k)

        x = self.embed_scale * self.embed_tokens(tokens)  # B x (P+k) x C
        query_embedding = self.embed_scale * self.mask_embedding.to(x.dtype).expand(bsz, k, -1)
        if self.src_embedding_copy:
            query_embedding = query_embedding + self.copied_source_embeddings(prefix, encoder_out, k)
        x = torch.cat([x[:, :-k], torch.where(masked.unsqueeze(-1), query_embedding, x[:, -k:])], dim=1)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if self.embed_positions is not None:
            x = x + self.embed_positions(tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x).transpose(0, 1)  # T x B x C

        enc = encoder_out["encoder_out"][0]
        enc_mask = encoder_out["encoder_padding_mask"][0] if len(encoder_out["encoder_padding_mask"]) > 0 else None
        self_pad = tokens.eq(self.padding_idx)  # passed even when all False: no read back to the host
        for layer in self.layers:
            # self_attn_mask=None: every position sees the whole prefix and every query
            x, _, _ = layer(x, enc, enc_mask, None, self_attn_mask=None, self_attn_padding_mask=self_pad)
        x = x[-k:]  # k x B x C: only the queries are predicted
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return self.output_layer(x)

    def copied_source_embeddings(self, prefix: Tensor, encoder_out, k: int) -> Tensor:
        """Source token embeddings copied monotonically: target slot t gets source token min(t, S-1)."""
        src_embed = encoder_out["encoder_embedding"][0]  # B x S x C
        src_mask = encoder_out["encoder_padding_mask"]
        src_pad = src_mask[0] if len(src_mask) > 0 else torch.zeros(src_embed.shape[:2], dtype=torch.bool, device=src_embed.device)
        src_len = (~src_pad).sum(1)  # B
        start = (~src_pad).int().argmax(1)  # first real source column of each row (left or right padding)
        target_pos = prefix.ne(self.padding_idx).sum(1, keepdim=True) - 1 + torch.arange(k, device=prefix.device)  # B x k
        index = start.unsqueeze(1) + torch.minimum(target_pos, (src_len - 1).unsqueeze(1))
        return src_embed.gather(1, index.unsqueeze(-1).expand(-1, -1, src_embed.size(-1)))
