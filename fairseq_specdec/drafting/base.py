"""Drafters: whatever proposes k candidate tokens for a batch of committed prefixes.

Proposing and verifying are separate roles: the speculative generator drives any object
with the five methods of ``Drafter``. The Spec-Drafter below is the one the paper trains;
``feature`` and ``chain`` have the drafters that read the verifier's states, ``ngram_drafter``
the model-free one; ``NoDrafter`` drafts nothing (greedy decoding).
"""
from typing import Any, Dict, Optional, Protocol, Tuple

import torch
from torch import Tensor


class Drafter(Protocol):
    """What the speculative generator calls, in this order per batch."""

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out: Optional[Any] = None) -> Any:
        """A new batch: return this drafter's state for it (the verifier's encoder output is
        offered for reuse)."""

    def propose(self, state: Any, prefix: Tensor, block_size: int) -> Tensor:
        """B x k drafted tokens after each committed prefix (B x P, left-padded, BOS first)."""

    def observe(self, state: Any, states: Tensor, tokens: Tensor, counts: Tensor) -> Any:
        """After verification: the verifier's top-layer states of the block's inputs
        (B x (k+1) x C), the tokens committed after each (B x (k+1)) and how many were
        committed per row (B); return the updated state. Copy what is kept: with CUDA
        graphs ``states`` is the verifier graph's output memory, rewritten by the next block."""

    def select(self, state: Any, rows: Tensor) -> Any:
        """Keep only ``rows`` of the batch (sentences still decoding)."""

    def max_positions(self) -> int:
        """The longest prefix plus k the drafter can read."""


class NoDrafter:
    """Drafts nothing: speculative decoding with it is greedy decoding."""

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out: Optional[Any] = None) -> None:
        return None

    def propose(self, state: None, prefix: Tensor, block_size: int) -> Tensor:
        return prefix.new_empty((prefix.size(0), 0))

    def observe(self, state: None, states: Tensor, tokens: Tensor, counts: Tensor) -> None:
        return None

    def select(self, state: None, rows: Tensor) -> None:
        return None

    def max_positions(self) -> int:
        return 1 << 30


def same_encoder(a, b) -> bool:
    """Whether two fairseq Transformer encoders compute the same function: same class and
    layer layout, equal parameters and buffers (on the same device and dtype)."""
    if type(a) is not type(b) or len(a.layers) != len(b.layers) or a.embed_scale != b.embed_scale:
        return False
    if type(a.embed_positions) is not type(b.embed_positions):
        return False
    if any(x.normalize_before != y.normalize_before for x, y in zip(a.layers, b.layers)):
        return False
    mine, theirs = a.state_dict(), b.state_dict()
    if mine.keys() != theirs.keys():
        return False
    return all(
        t.shape == theirs[n].shape and t.dtype == theirs[n].dtype and t.device == theirs[n].device
        and torch.equal(t, theirs[n])
        for n, t in mine.items()
    )


def encode_source(drafter, net_input: Dict[str, Tensor], verifier_encoder_out=None):
    """A drafter's encoder output: the verifier's, when the drafter found at construction
    that the two encoders are equal (``reuses_verifier_encoder``), else its own."""
    if drafter.reuses_verifier_encoder and verifier_encoder_out is not None:
        return verifier_encoder_out
    return drafter.model.encoder.forward_torchscript(net_input)


def forbidden_tokens(tgt_dict) -> Tensor:
    """Tokens a draft may never hold: specials, and the filler symbols fairseq-preprocess
    adds to round the dictionary size (madeupword0000, ...)."""
    fillers = {i for i, sym in enumerate(tgt_dict.symbols) if sym.startswith("madeupword")}
    return torch.tensor(sorted({tgt_dict.pad(), tgt_dict.bos(), tgt_dict.unk()} | fillers))


def top_tokens(scores: Tensor) -> Tuple[Tensor, Tensor]:
    """The argmax of ``scores`` (logits or log-probabilities, ... x V) and its softmax probability."""
    lprobs = torch.log_softmax(scores.float(), dim=-1)
    tokens = lprobs.argmax(-1)
    return tokens, lprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).exp()


class TrainedDrafter:
    """What the proposers of trained drafter models share: the model, whether its encoder
    is the verifier's (a drafter trained with --share-verifier-encoder: its output is
    reused), the tokens a draft may never hold, and the BOS decoding starts from."""

    def __init__(self, model, tgt_dict, verifier=None):
        self.model = model
        self.reuses_verifier_encoder = verifier is not None and same_encoder(model.encoder, verifier.encoder)
        self.forbidden = forbidden_tokens(tgt_dict)
        self.bos = tgt_dict.eos()  # fairseq decodes from eos

    def forbid(self, logits: Tensor) -> Tensor:
        """``logits`` (... x V) with the forbidden tokens at -inf, in place; the index moves to
        the logits' device once, not on every call."""
        if self.forbidden.device != logits.device:
            self.forbidden = self.forbidden.to(logits.device)
        return logits.index_fill_(-1, self.forbidden, float("-inf"))


class NARDrafter(TrainedDrafter):
    """Drafts with a trained Spec-Drafter (``specdec_drafter`` model): one decoder
    forward over prefix + k [MASK] queries, argmax per query position."""

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> Any:
        """Encode the source once per batch; the result is this drafter's state. When the
        drafter's encoder is the verifier's, ``verifier_encoder_out`` is reused instead."""
        src_len, limit = net_input["src_tokens"].size(1), self.model.encoder.max_positions()
        if src_len > limit and not (self.reuses_verifier_encoder and verifier_encoder_out is not None):
            raise ValueError(
                f"a source of {src_len} tokens is longer than the drafter's encoder positions ({limit}); "
                f"filter long sources (--max-source-positions {limit} --skip-invalid-size-inputs-valid-test) "
                f"or use a drafter trained with longer positions"
            )
        return encode_source(self, net_input, verifier_encoder_out)

    def select(self, encoder_out: Any, rows: Tensor) -> Any:
        """Keep only ``rows`` of the batch (unfinished sentences)."""
        return self.model.encoder.reorder_encoder_out(encoder_out, rows)

    def observe(self, encoder_out: Any, states: Tensor, tokens: Tensor, counts: Tensor) -> Any:
        """Verification's states of the newly committed tokens: not used by this drafter."""
        return encoder_out

    def max_positions(self) -> int:
        """The longest decoder input (prefix + queries) the drafter's positions can hold."""
        return self.model.decoder.max_positions()

    def propose(self, encoder_out: Any, prefix: Tensor, block_size: int) -> Tensor:
        """B x k drafted tokens after each left-padded prefix (B x P, starting with eos)."""
        logits = self.log_probs(encoder_out, prefix, block_size)
        return logits.argmax(-1)

    def propose_with_confidence(self, encoder_out: Any, prefix: Tensor, block_size: int) -> Tuple[Tensor, Tensor]:
        """``propose``'s B x k tokens and the drafter's softmax probability of each (B x k)."""
        return top_tokens(self.log_probs(encoder_out, prefix, block_size))

    def log_probs(self, encoder_out: Any, prefix: Tensor, block_size: int) -> Tensor:
        logits = self.forbid(self.model.decoder(prefix, encoder_out, block_size))  # B x k x V
        return torch.log_softmax(logits.float(), dim=-1)
