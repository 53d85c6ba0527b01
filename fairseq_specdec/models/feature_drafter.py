"""The feature drafter: a Spec-Drafter that reads the verifier's own decoder states for
the committed prefix instead of re-reading the prefix tokens (GliDe/EAGLE-style reuse of
what verification has already computed). See ``fairseq_specdec.feature_blocks`` for the
slot/query layout."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerDecoderBase
from torch import Tensor

from fairseq_specdec.feature_blocks import additive_mask, block_attention_mask
from fairseq_specdec.models.specdec_drafter import SpecDrafterModel, drafter_architecture, drafter_tiny


class FeatureDrafterDecoder(TransformerDecoderBase):
    """Shallow decoder over *slots* (verifier state + next token, fused) and k queries.

    Slot j = fuse([h_j ; E(y_{j+1})]) where h_j is the verifier's top-layer output after
    reading y_0..y_j. Queries carry a learned [MASK] embedding plus a learned embedding
    of their offset 0..k-1 after the last committed token. Slots attend causally; a
    block's queries attend to the slots before its cut and to each other; every
    position cross-attends to the source. Positional embeddings are not used: the
    verifier's states carry the position.
    """

    def __init__(self, cfg, dictionary, embed_tokens, max_block_size: int):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=False)
        dim = embed_tokens.embedding_dim
        self.fuse = nn.Linear(2 * dim, dim)
        with torch.no_grad():  # start as (state + token embedding)
            self.fuse.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)], dim=1))
            self.fuse.bias.zero_()
        self.mask_embedding = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.mask_embedding, mean=0.0, std=dim**-0.5)
        self.offset_embedding = nn.Embedding(max_block_size, dim)
        nn.init.normal_(self.offset_embedding.weight, mean=0.0, std=dim**-0.5)

    @property
    def max_block_size(self) -> int:
        return self.offset_embedding.num_embeddings

    def slot_inputs(self, states: Tensor, next_tokens: Tensor) -> Tensor:
        """Fuse verifier states (B x S x C) with the embeddings of the tokens that
        followed them (B x S): B x S x C."""
        embedded = self.embed_scale * self.embed_tokens(next_tokens)
        return self.fuse(torch.cat([states.to(embedded.dtype), embedded], dim=-1))

    def query_inputs(self, bsz: int, num_blocks: int, block_size: int, dtype) -> Tensor:
        if block_size > self.max_block_size:
            raise ValueError(f"block size {block_size} exceeds this feature drafter's --max-block-size "
                             f"{self.max_block_size}; decode with --block-size <= {self.max_block_size}")
        block = self.embed_scale * (self.mask_embedding + self.offset_embedding.weight[:block_size])  # k x C
        return block.to(dtype).repeat(num_blocks, 1).unsqueeze(0).expand(bsz, -1, -1)

    def run_layers(self, slots: Tensor, slot_pad: Tensor, queries: Tensor, allowed: Tensor,
                   encoder_out: Dict[str, List[Tensor]]) -> Tensor:
        """Hidden states of the queries (B x Q x C) after the layers (and final norm)."""
        x = torch.cat([slots, queries], dim=1)  # B x (S+Q) x C
        pad = torch.cat([slot_pad, slot_pad.new_zeros(queries.shape[:2])], dim=1)  # B x L
        return self.run(x, pad, allowed, encoder_out)[:, slots.size(1):]

    def run(self, x: Tensor, pad: Tensor, allowed: Optional[Tensor], encoder_out: Dict[str, List[Tensor]],
            incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None) -> Tensor:
        """The layers (and final norm) over B x L x C inputs whose attention ``allowed``
        (L x L) permits and ``pad`` (B x L, True = no input) masks: B x L x C. With
        ``incremental_state`` the layers keep their keys/values there, and a later call
        adds positions that see every earlier one (``allowed`` None)."""
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x).transpose(0, 1)  # L x B x C
        enc = encoder_out["encoder_out"][0]
        enc_mask = encoder_out["encoder_padding_mask"][0] if len(encoder_out["encoder_padding_mask"]) > 0 else None
        mask = additive_mask(allowed, x.dtype) if allowed is not None else None
        for layer in self.layers:
            # the pad mask is passed even when all False: no read back to the host
            x, _, _ = layer(x, enc, enc_mask, incremental_state, self_attn_mask=mask, self_attn_padding_mask=pad)
            x = x.masked_fill(pad.t().unsqueeze(-1), 0.0)  # padded slots may see no key at all: keep them finite
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)  # B x Q x C
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x

    def forward_cuts(self, verifier_states: Tensor, target: Tensor, cuts: Tensor, block_size: int,
                     encoder_out: Dict[str, List[Tensor]]) -> Tensor:
        """Training: a block after each of the cut points ``cuts`` of every target, in one pass.

        Args:
            verifier_states: B x T x C teacher-forced verifier outputs (after reading y_0..y_j).
            target: B x T right-padded targets y_1..y_T.
            cuts: N cut points m in [0, T) shared by the batch.
        Returns: B x N x k x C query states; query i after cut m drafts y_{m+1+i}.
        """
        bsz, length = target.shape
        slots = self.slot_inputs(verifier_states, target)
        queries = self.query_inputs(bsz, cuts.numel(), block_size, slots.dtype)
        allowed = block_attention_mask(length, cuts, block_size)
        hidden = self.run_layers(slots, target.eq(self.padding_idx), queries, allowed, encoder_out)
        return hidden.view(bsz, cuts.numel(), block_size, -1)

    def forward_block(self, slots: Tensor, slot_pad: Tensor, block_size: int,
                      encoder_out: Dict[str, List[Tensor]]) -> Tensor:
        """Decoding: one block after each row's slots (B x S x C, right-padded). B x k x V logits."""
        bsz, num_slots = slot_pad.shape
        queries = self.query_inputs(bsz, 1, block_size, slots.dtype)
        allowed = block_attention_mask(num_slots, torch.tensor([num_slots], device=slots.device), block_size)
        return self.output_layer(self.run_layers(slots, slot_pad, queries, allowed, encoder_out))


@register_model("specdec_feature_drafter")
class SpecFeatureDrafterModel(SpecDrafterModel):
    """Spec-Drafter variant whose decoder reads the verifier's decoder states (see
    ``FeatureDrafterDecoder``); trains on every cut point of a target at once."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--max-block-size", type=int, metavar="K",
                            help="largest k the drafter can draft (size of its offset embedding)")

    @classmethod
    def build_model(cls, args, task):
        if args.src_embedding_copy:
            raise ValueError("--src-embedding-copy is not used by specdec_feature_drafter; remove it")
        if not args.init_from_verifier:
            raise ValueError("specdec_feature_drafter reads the verifier's states: give the verifier "
                             "checkpoint with --init-from-verifier PATH")
        return super().build_model(args, task)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return FeatureDrafterDecoder(cfg, tgt_dict, embed_tokens, args.max_block_size)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, block_size: int,
                verifier_states: Tensor, target: Tensor, cuts: Tensor,
                encoder_out: Optional[Dict[str, List[Tensor]]] = None):
        """B x N x k x C query states after the N ``cuts`` of ``target``; ``encoder_out`` may
        pass the verifier's encoder output when this drafter shares the verifier's encoder."""
        if encoder_out is None or not self.args.share_verifier_encoder:
            encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return self.decoder.forward_cuts(verifier_states, target, cuts, block_size, encoder_out)


def state_drafter_defaults(args, max_block_size: int) -> None:
    """Defaults of the drafters that read the verifier's states: one decoder layer, and the
    most queries (k) their offset embeddings hold."""
    args.max_block_size = getattr(args, "max_block_size", None) or max_block_size
    args.decoder_layers = getattr(args, "decoder_layers", 1)


@register_model_architecture("specdec_feature_drafter", "specdec_drafter_feature")
def feature_drafter_architecture(args):
    state_drafter_defaults(args, 32)
    drafter_architecture(args)


@register_model_architecture("specdec_feature_drafter", "specdec_drafter_feature_tiny")
def feature_drafter_tiny(args):
    """CPU-sized: the demo verifier's widths, one decoder layer."""
    state_drafter_defaults(args, 32)
    drafter_tiny(args)
