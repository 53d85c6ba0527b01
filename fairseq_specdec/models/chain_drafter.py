"""The chain drafter: a one-layer autoregressive drafter over the verifier's own states
(EAGLE-style). It predicts the verifier's next top-layer state from the states of the
committed prefix (handed over by verification) and reads its token through the
verifier's own output projection; drafting chains k such steps, each feeding its
predicted state and token back in. Training is teacher-forced: every position of a
target in one causal pass."""
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig
from torch import Tensor

from fairseq_specdec.models.feature_drafter import StateDrafterDecoder, StateDrafterModel
from fairseq_specdec.models.specdec_drafter import drafter_architecture, drafter_tiny


def causal_mask(length: int, device=None) -> Tensor:
    """L x L allowed attention: position p sees positions <= p."""
    ids = torch.arange(length, device=device)
    return ids.unsqueeze(1) >= ids.unsqueeze(0)


class ChainPredictions(NamedTuple):
    """What the chain drafter's forward returns to its criterion, at the target's M tokens."""

    states: Tensor  # M x C: predicted verifier states
    logits: Tensor  # M x V: their tokens' logits through the output projection


class ChainDrafterDecoder(StateDrafterDecoder):
    """Input p fuses a verifier state with the token read after it: position 0 holds a
    learned start state with the BOS, position p >= 1 the verifier's state h_{p-1} (after
    reading y_0..y_{p-1}) with y_p. Output p is the predicted state h_p, and the
    verifier's output projection of it predicts y_{p+1}."""

    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(cfg, dictionary, embed_tokens)
        dim = embed_tokens.embedding_dim
        self.start_state = nn.Parameter(torch.zeros(dim))
        self.state_head = nn.Linear(dim, dim)
        with torch.no_grad():
            self.state_head.weight.copy_(torch.eye(dim))
            self.state_head.bias.zero_()

    def upgrade_state_dict_named(self, state_dict, name):
        """Checkpoints saved when this decoder subclassed the feature drafter's carry its
        unused query embeddings: drop them."""
        for unused in ("mask_embedding", "offset_embedding.weight"):
            state_dict.pop(f"{name}.{unused}" if name else unused, None)
        return super().upgrade_state_dict_named(state_dict, name)

    def start_input(self, bsz: int, bos: Tensor) -> Tensor:
        """B x 1 x C: the start position's input."""
        return self.slot_inputs(self.start_state.expand(bsz, 1, -1), bos.view(bsz, 1))

    def predict_states(self, inputs: Tensor, pad: Tensor, encoder_out: Dict[str, List[Tensor]]) -> Tensor:
        """B x L x C predicted verifier states after each position of the causal pass."""
        hidden = self.run(inputs, pad, causal_mask(inputs.size(1), inputs.device), encoder_out)
        return self.state_head(hidden)

    def forward_teacher(self, verifier_states: Tensor, prev_output_tokens: Tensor, target: Tensor,
                        encoder_out: Dict[str, List[Tensor]]) -> Tensor:
        """Training: B x T x C predictions of h_0..h_{T-1} (the verifier's states), from the
        teacher-forced states (B x T x C) and ``prev_output_tokens`` = BOS, y_1..y_{T-1}."""
        bsz = target.size(0)
        inputs = torch.cat([self.start_input(bsz, prev_output_tokens[:, 0]),
                            self.slot_inputs(verifier_states[:, :-1], prev_output_tokens[:, 1:])], dim=1)
        return self.predict_states(inputs, target.eq(self.padding_idx), encoder_out)


@register_model("specdec_chain_drafter")
class SpecChainDrafterModel(StateDrafterModel):
    """EAGLE-style chain drafter (see ``ChainDrafterDecoder``); needs its verifier."""

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return ChainDrafterDecoder(TransformerConfig.from_namespace(args), tgt_dict, embed_tokens)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, verifier_states: Tensor, target: Tensor,
                encoder_out: Optional[Dict[str, List[Tensor]]] = None) -> ChainPredictions:
        """The predicted verifier states and their logits at every (non-pad) target position,
        teacher-forced. The output projection runs here, inside the forward, for the
        distributed wrapper's sake."""
        encoder_out = self.encode(src_tokens, src_lengths, encoder_out)
        states = self.decoder.forward_teacher(verifier_states, prev_output_tokens, target, encoder_out)
        states = states[target.ne(self.decoder.padding_idx)]  # M x C
        return ChainPredictions(states, self.decoder.output_layer(states))


def chain_drafter_defaults(args) -> None:
    """One decoder layer."""
    args.decoder_layers = getattr(args, "decoder_layers", 1)


@register_model_architecture("specdec_chain_drafter", "specdec_drafter_chain")
def chain_drafter_architecture(args):
    chain_drafter_defaults(args)
    drafter_architecture(args)


@register_model_architecture("specdec_chain_drafter", "specdec_drafter_chain_tiny")
def chain_drafter_tiny(args):
    """CPU-sized: the demo verifier's widths, one decoder layer."""
    chain_drafter_defaults(args)
    drafter_tiny(args)
