"""The drafters that read the verifier's own decoder states for the committed prefix
instead of re-reading the prefix tokens (GliDe/EAGLE-style reuse of what verification has
already computed): a small shared base (``StateDrafterDecoder``, ``StateDrafterModel``),
and the feature drafter, which drafts k [MASK] queries per block (see
``fairseq_specdec.models.feature_layout`` for the slot/query layout). The chain drafter, its
sibling, is in ``chain_drafter``."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerDecoderBase
from torch import Tensor

from fairseq_specdec.models.feature_layout import additive_mask, block_attention_mask
from fairseq_specdec.models.specdec_drafter import SpecDrafterModel, drafter_architecture, drafter_tiny


class StateDrafterDecoder(TransformerDecoderBase):
    """Shallow decoder over *slots*: a verifier state fused with the embedding of the token
    read after it. Positional embeddings are not used: the verifier's states carry the
    position."""

    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=False)
        dim = embed_tokens.embedding_dim
        self.fuse = nn.Linear(2 * dim, dim)
        with torch.no_grad():  # start as (state + token embedding)
            self.fuse.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)], dim=1))
            self.fuse.bias.zero_()

    def slot_inputs(self, states: Tensor, next_tokens: Tensor, fuse=None) -> Tensor:
        """Fuse verifier states (B x S x C) with the embeddings of the tokens that
        followed them (B x S): B x S x C. ``fuse``: the fuse layer's map to use (decoding's
        lean view of it; default the layer itself)."""
        embedded = self.embed_scale * self.embed_tokens(next_tokens)
        return (fuse or self.fuse)(torch.cat([states.to(embedded.dtype), embedded], dim=-1))

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


class FeatureDrafterDecoder(StateDrafterDecoder):
    """Slots and k queries per block. Slot j = fuse([h_j ; E(y_{j+1})]) where h_j is the
    verifier's top-layer output after reading y_0..y_j. Queries carry a learned [MASK]
    embedding plus a learned embedding of their offset 0..k-1 after the last committed
    token. Slots attend causally; a block's queries attend to the slots before its cut and
    to each other; every position cross-attends to the source.
    """

    def __init__(self, cfg, dictionary, embed_tokens, max_block_size: int):
        super().__init__(cfg, dictionary, embed_tokens)
        dim = embed_tokens.embedding_dim
        self.mask_embedding = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.mask_embedding, mean=0.0, std=dim**-0.5)
        self.offset_embedding = nn.Embedding(max_block_size, dim)
        nn.init.normal_(self.offset_embedding.weight, mean=0.0, std=dim**-0.5)

    @property
    def max_block_size(self) -> int:
        return self.offset_embedding.num_embeddings

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


class StateDrafterModel(SpecDrafterModel):
    """The base of the drafters that read the verifier's states (the feature and the chain
    drafter): they need the verifier at training (``--init-from-verifier``), may share its
    encoder, and do not use ``--src-embedding-copy``. Not registered: each kind registers
    its own model."""

    @classmethod
    def build_model(cls, args, task):
        name = cls.__name__
        if args.src_embedding_copy:
            raise ValueError(f"--src-embedding-copy is not used by {name} (--arch {args.arch}); remove it")
        if not args.init_from_verifier:
            raise ValueError(f"{name} (--arch {args.arch}) reads the verifier's states: give the verifier "
                             "checkpoint with --init-from-verifier PATH")
        return super().build_model(args, task)

    def encode(self, src_tokens, src_lengths, encoder_out=None):
        """The drafter's encoder output, or the verifier's (``encoder_out``) when it shares it."""
        if encoder_out is None or not self.args.share_verifier_encoder:
            encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return encoder_out


@register_model("specdec_feature_drafter")
class SpecFeatureDrafterModel(StateDrafterModel):
    """The feature drafter (see ``FeatureDrafterDecoder``); trains on every cut point of a
    target at once."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--max-block-size", type=int, metavar="K",
                            help="largest k the drafter can draft (size of its offset embedding)")

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return FeatureDrafterDecoder(cfg, tgt_dict, embed_tokens, args.max_block_size)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, block_size: int,
                verifier_states: Tensor, target: Tensor, cuts: Tensor, scored: Tensor,
                encoder_out: Optional[Dict[str, List[Tensor]]] = None) -> Tensor:
        """M x V logits of the queries ``scored`` selects (B x N x k bool, M of them True)
        among the k after each of the N ``cuts`` of ``target``; ``encoder_out`` may pass the
        verifier's encoder output when this drafter shares the verifier's encoder. The output
        projection runs here, inside the forward, for the distributed wrapper's sake."""
        encoder_out = self.encode(src_tokens, src_lengths, encoder_out)
        hidden = self.decoder.forward_cuts(verifier_states, target, cuts, block_size, encoder_out)
        return self.decoder.output_layer(hidden[scored])


def feature_drafter_defaults(args) -> None:
    """One decoder layer; up to 32 queries (k) in the offset embedding."""
    args.max_block_size = getattr(args, "max_block_size", None) or 32
    args.decoder_layers = getattr(args, "decoder_layers", 1)


@register_model_architecture("specdec_feature_drafter", "specdec_drafter_feature")
def feature_drafter_architecture(args):
    feature_drafter_defaults(args)
    drafter_architecture(args)


@register_model_architecture("specdec_feature_drafter", "specdec_drafter_feature_tiny")
def feature_drafter_tiny(args):
    """CPU-sized: the demo verifier's widths, one decoder layer."""
    feature_drafter_defaults(args)
    drafter_tiny(args)
