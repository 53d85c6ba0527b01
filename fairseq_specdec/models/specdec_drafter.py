"""The Spec-Drafter model (Xia et al., 2023): a Transformer encoder and a shallow,
non-autoregressive decoder that drafts the next k target tokens in one forward pass."""
import logging
from argparse import Namespace
from typing import Callable, NamedTuple, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig
from fairseq.models.transformer.transformer_legacy import TransformerModel, base_architecture
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import Tensor

from fairseq_specdec.models.drafter_decoder import SpecDrafterDecoder

logger = logging.getLogger(__name__)

# k when a drafter is trained without --block-size (the paper's k). Such a checkpoint
# records no k (its --block-size is None) and decodes with this value, so changing it
# changes how those checkpoints decode.
DEFAULT_BLOCK_SIZE = 25


class VerifierInitError(ValueError):
    pass


class DrafterLogits(NamedTuple):
    """What the Spec-Drafter's forward returns to its criterion."""

    logits: Tensor  # B x k x V: the pass the loss is taken on
    first_pass: Tensor  # B x k: the argmax predictions with every query masked
    revealed: Optional[Tensor]  # B x k target tokens shown to the second pass (pad = hidden), or None


@register_model("specdec_drafter")
class SpecDrafterModel(TransformerModel):
    """Spec-Drafter: an independent NAR model that proposes k tokens per forward.

    Takes every option of fairseq's ``transformer`` (widths, layers, learned positions,
    shared embeddings, ...) plus the drafter's own. The decoder input is the committed
    prefix followed by k query positions (see ``SpecDrafterDecoder``).
    """

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--src-embedding-copy", action="store_true",
                            help="add a monotone copy of the source token embeddings to the query positions")
        parser.add_argument("--apply-bert-init", action="store_true",
                            help="initialize weights as in BERT (normal(0, 0.02)) before any verifier init")
        parser.add_argument("--init-from-verifier", type=str, metavar="PATH",
                            help="start the encoder (and shared embeddings) from this verifier checkpoint")
        parser.add_argument("--init-decoder-from-verifier", action="store_true",
                            help="with --init-from-verifier, also start the decoder layers from the verifier's "
                                 "top decoder layers (same widths needed)")
        parser.add_argument("--share-verifier-encoder", action="store_true",
                            help="with --init-from-verifier, keep the verifier's encoder (and embeddings) frozen: "
                                 "training skips the encoder's backward pass, and SpecDec reuses the verifier's "
                                 "encoder output instead of encoding each source twice")

    @classmethod
    def build_model(cls, args, task):
        model = super().build_model(args, task)
        # every flag (``self.args`` becomes a TransformerConfig, which keeps the transformer's only)
        model.training_flags = dict(vars(args) if isinstance(args, Namespace) else args)
        if args.apply_bert_init:
            model.apply(init_bert_params)
        if args.share_verifier_encoder:
            model.encoder.requires_grad_(False)  # embeddings too: shared ones are the encoder's
        return model

    @property
    def trained_block_size(self) -> int:
        """k this drafter is trained with: the task's --block-size, which fairseq keeps in the
        namespace of every training flag it builds the model from (and saves in checkpoints)."""
        k = self.training_flags.get("block_size")
        return DEFAULT_BLOCK_SIZE if k is None else int(k)

    def max_positions(self):
        """The decoder reads a target prefix plus k queries: trained (or decoding alone), its
        targets must leave room for k. (Drafting next to a verifier, the speculative
        generator checks the length each batch needs: ``check_drafter_length``.)"""
        max_source, max_target = super().max_positions()
        return max_source, max_target - self.trained_block_size

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return SpecDrafterDecoder(cfg, tgt_dict, embed_tokens, src_embedding_copy=args.src_embedding_copy)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, block_size: int,
                glance: Optional[Callable[[Tensor], Tensor]] = None) -> DrafterLogits:
        """The k tokens after each (left-padded) prefix ``prev_output_tokens``, in one pass;
        with ``glance`` (glancing training) in two: a first pass without gradients predicts
        every query, ``glance(first-pass predictions)`` returns the target tokens to reveal
        (B x k, pad = stays masked) and the logits are those of the second pass. Both passes
        run here, inside the model's forward, so that a distributed wrapper (DDP) sees every
        parameter the loss uses."""
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        if glance is None:
            logits = self.decoder(prev_output_tokens, encoder_out, block_size)
            return DrafterLogits(logits, logits.detach().argmax(-1), None)
        with torch.no_grad():
            first_pass = self.decoder(prev_output_tokens, encoder_out, block_size).argmax(-1)
        revealed = glance(first_pass)
        logits = self.decoder(prev_output_tokens, encoder_out, block_size, revealed=revealed)
        return DrafterLogits(logits, first_pass, revealed)

    def init_from_verifier(self, path: str) -> dict:
        """Copy the verifier's encoder (and its embeddings) into this drafter; return the
        verifier checkpoint's state as loaded (the task records the verifier from it).

        Encoder parameters are matched by name; a drafter with more encoder layers keeps
        its extra layers as initialized. A shape mismatch is an error naming the parameter.
        """
        try:
            state = checkpoint_utils.load_checkpoint_to_cpu(path)
        except FileNotFoundError:
            raise VerifierInitError(f"--init-from-verifier: no checkpoint at {path!r}") from None
        verifier = dict(state["model"])
        if self.args.init_decoder_from_verifier:
            verifier.update(top_decoder_layers(verifier, self.args.decoder_layers))
        own = self.state_dict()
        wanted = [n for n in verifier if n.startswith("encoder.") or n == "decoder.embed_tokens.weight"
                  or (self.args.init_decoder_from_verifier and n.startswith(("decoder.layers.", "decoder.layer_norm.")))]
        copied = []
        for name in wanted:
            if name not in own:
                if name.startswith(("encoder.layers.", "decoder.layers.")):
                    continue  # a verifier layer deeper than this drafter's encoder
                raise VerifierInitError(f"--init-from-verifier {path}: the drafter has no parameter {name}")
            if own[name].shape != verifier[name].shape:
                raise VerifierInitError(
                    f"--init-from-verifier {path}: parameter {name} has shape {tuple(verifier[name].shape)} "
                    f"in the verifier but {tuple(own[name].shape)} in the drafter; give the drafter the "
                    f"verifier's widths (--encoder-embed-dim, --encoder-ffn-embed-dim, heads, positions) "
                    f"and the same dictionary"
                )
            own[name] = verifier[name]
            copied.append(name)
        kept = sorted(n for n in own if n.startswith("encoder.") and n not in verifier)
        if self.args.share_verifier_encoder and kept:
            raise VerifierInitError(
                f"--share-verifier-encoder: the drafter's encoder must be the verifier's, but the verifier "
                f"{path} has no {kept[0]} ({len(kept)} such parameters): use the verifier's --encoder-layers")
        self.load_state_dict(own)
        logger.info(
            f"initialized {len(copied)} drafter parameters from verifier {path}; "
            f"{len(kept)} encoder parameters kept their initialization"
        )
        return state


def top_decoder_layers(verifier_state, num_layers: int):
    """The verifier's top ``num_layers`` decoder layers renamed as layers 0..num_layers-1."""
    prefix = "decoder.layers."
    depth = 1 + max(int(n[len(prefix):].split(".")[0]) for n in verifier_state if n.startswith(prefix))
    if depth < num_layers:
        raise VerifierInitError(
            f"--init-decoder-from-verifier: the verifier has {depth} decoder layers, the drafter {num_layers}")
    renamed = {}
    for name, tensor in verifier_state.items():
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            target = int(index) - (depth - num_layers)
            if target >= 0:
                renamed[f"{prefix}{target}.{rest}"] = tensor
    return renamed


@register_model_architecture("specdec_drafter", "specdec_drafter")
def drafter_architecture(args):
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.src_embedding_copy = getattr(args, "src_embedding_copy", False)
    args.apply_bert_init = getattr(args, "apply_bert_init", False)
    args.init_from_verifier = getattr(args, "init_from_verifier", None)
    args.init_decoder_from_verifier = getattr(args, "init_decoder_from_verifier", False)
    args.share_verifier_encoder = getattr(args, "share_verifier_encoder", False)
    base_architecture(args)


@register_model_architecture("specdec_drafter", "specdec_drafter_base")
def drafter_base(args):
    """Transformer-base widths, deep encoder and shallow decoder (the paper's choice)."""
    args.encoder_layers = getattr(args, "encoder_layers", 12)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    drafter_architecture(args)


@register_model_architecture("specdec_drafter", "specdec_drafter_6e6d")
def drafter_6e6d(args):
    """The reference release's shape: Transformer-base with 6 encoder and 6 decoder layers."""
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    drafter_architecture(args)


@register_model_architecture("specdec_drafter", "specdec_drafter_tiny")
def drafter_tiny(args):
    """CPU-sized drafter for the demo and tests; matches configs/verifier_demo widths."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 1024)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.encoder_layers = getattr(args, "encoder_layers", 3)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    drafter_architecture(args)
