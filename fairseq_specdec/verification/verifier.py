"""Spec-Verification's model side: a stock fairseq Transformer scores a block of tokens
per row in ONE forward over its key/value cache.

The verifier is the counterpart of the drafter interface: ``start`` encodes a batch and
allocates its state, ``score`` runs the last committed token plus the drafts of every row,
``commit`` keeps the first ``counts[b]`` of them in row b's cache, ``select`` keeps some
rows (finished sentences leave). The cache is preallocated (``lean_layers``): entries are
written in place at each row's own offset, and a rejected draft's entry is simply left
beyond the row's length, to be overwritten by the next block. Nothing here reads a value
back to the host.
"""
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch
from fairseq.models import MODEL_REGISTRY, FairseqEncoderDecoderModel, FairseqLanguageModel
from fairseq.models.transformer import TransformerDecoderBase, TransformerEncoderBase
from torch import Tensor

from fairseq_specdec.verification.cache import DecoderCache
from fairseq_specdec.verification.lean_layers import allocate_cache, run_block, unsupported_layer_options
from fairseq_specdec.verification.lean_weights import LeanDecoder
from fairseq_specdec.verification.static_rows import GraphOptions, StaticPool, StaticRows
from fairseq_specdec.verifier_record import model_arch


class UnsupportedVerifierError(ValueError):
    """A verifier checkpoint the lean block forward cannot decode losslessly."""


NEEDED = ("SpecDec and --lean-greedy verify with an encoder-decoder fairseq Transformer (TransformerModel or "
          "a subclass: --task translation with --arch transformer*, transformer_align or bart_*)")
STOCK_SEARCH = "or decode this checkpoint with fairseq's own search (drop --lean-greedy/--drafter-path/--ngram-drafter)"


def architecture(model) -> str:
    """How an error names the model: its --arch where the model keeps its arguments
    (fairseq's TransformerModel does), else the name its class is registered under."""
    arch = model_arch(model)
    if arch != "?":
        return f"--arch {arch} ({type(model).__name__})"
    registered = [name for name, cls in MODEL_REGISTRY.items() if cls is type(model)]
    return type(model).__name__ + (f" (registered as {registered[0]})" if registered else "")


def check_verifier(model) -> None:
    """Raise UnsupportedVerifierError, naming the architecture and the option, for a verifier
    the lean block forward cannot drive. Generators call it when they are built."""
    name = architecture(model)
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not (isinstance(model, FairseqEncoderDecoderModel) and isinstance(encoder, TransformerEncoderBase)
            and isinstance(decoder, TransformerDecoderBase)):
        what = ("a decoder-only language model" if isinstance(model, FairseqLanguageModel) else
                f"its encoder is {type(encoder).__name__} and its decoder {type(decoder).__name__}")
        raise UnsupportedVerifierError(f"the verifier is {name}, {what}. {NEEDED}: use such a checkpoint as "
                                       f"--path, {STOCK_SEARCH}")
    if decoder.cross_self_attention:
        reason = "--cross-self-attention"
    elif decoder.adaptive_softmax is not None:
        reason = "an adaptive softmax (--adaptive-softmax-cutoff)"
    else:
        reason = next((r for r in map(unsupported_layer_options, decoder.layers) if r is not None), None)
    if reason is not None:
        raise UnsupportedVerifierError(
            f"the verifier ({name}) has {reason}, which the lean block forward does not implement: "
            f"use a verifier trained without it, {STOCK_SEARCH}")


@dataclass
class VerifierState:
    """What the verifier keeps for a batch between iterations (mutable: ``score`` writes
    the cache, ``commit`` advances it)."""

    encoder_out: Dict[str, List[Tensor]]  # fairseq's encoder output of these rows (drafters read it)
    cache: DecoderCache  # keys/values; cache.length[b] = row b's committed tokens (BOS included) minus the last
    block: int = 0  # on the host: tokens per row of the last ``score`` (k + 1)
    static: Optional[StaticRows] = None  # ``StaticVerifier``: the buffers the cache lives in


class Verifier:
    """Scores blocks of tokens with a stock fairseq Transformer (``--arch transformer*``)."""

    def __init__(self, model, temperature: float = 1.0):
        check_verifier(model)
        self.model = model
        self.decoder: TransformerDecoderBase = model.decoder
        self.temperature = temperature
        self._position_table: Optional[Tensor] = None  # L x C
        self.lean = LeanDecoder.of(self.decoder)  # the decoder's weights as the lean forward reads them

    def start(self, net_input: Dict[str, Tensor], capacity: int) -> VerifierState:
        """Encode the sources and allocate a cache of ``capacity`` entries per row (the
        committed tokens, BOS included, plus one block)."""
        encoder_out = self.model.encoder.forward_torchscript(net_input)
        self.refresh_lean()
        cache = allocate_cache(self.decoder, encoder_out, capacity)
        self.positions(capacity, cache.length.device)  # built here, once, not inside the loop
        return VerifierState(encoder_out, cache)

    def score(self, state: VerifierState, last_tokens: Tensor, drafts: Tensor) -> Tuple[Tensor, Tensor]:
        """Log-probabilities of the next token after the last committed token (B) and after
        each of the drafts (B x k): B x (k+1) x V (float), and the top-layer states they
        are computed from, B x (k+1) x C. Writes the block's keys/values into the cache."""
        tokens = torch.cat([last_tokens.unsqueeze(1), drafts], dim=1)  # B x n
        state.block = tokens.size(1)
        return self.forward(tokens, state.cache, self._position_table)

    def forward(self, tokens: Tensor, cache: DecoderCache, table: Optional[Tensor],
                width: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """``score``'s computation for the block ``tokens`` (B x n) at the cache's lengths,
        with the position table ``table`` (None: no positions); ``width`` as in ``run_block``."""
        dec = self.decoder
        x = dec.embed_scale * dec.embed_tokens(tokens)  # B x n x C
        if dec.quant_noise is not None:  # --quant-noise-pq: a projection fairseq applies at inference too
            x = dec.quant_noise(x)
        if dec.project_in_dim is not None:
            x = dec.project_in_dim(x)
        if table is not None:
            positions = cache.length.unsqueeze(1) + torch.arange(tokens.size(1), device=tokens.device)
            x = x + table[positions.clamp(max=table.size(0) - 1)]
        if dec.layernorm_embedding is not None:
            x = dec.layernorm_embedding(x)
        x = run_block(self.lean, x, cache, width)
        logits = self.lean.logits(dec, x)
        if self.temperature != 1.0:
            logits = logits.div_(self.temperature)
        return self.model.get_normalized_probs((logits, None), log_probs=True), x

    def refresh_lean(self) -> bool:
        """Re-read the weights' view if the verifier's parameters changed (True then)."""
        lean = self.lean.current(self.decoder)
        if lean is self.lean:
            return False
        self.lean = lean
        return True

    def commit(self, state: VerifierState, counts: Tensor, max_length: Optional[int] = None) -> None:
        """Keep the first ``counts[b]`` tokens of row b's last block in the cache (the input
        token and the accepted drafts); the other entries lie beyond the row's length.
        ``max_length``, the rows' longest length after this commit when the caller has read
        it, narrows the columns the next block attends over."""
        state.cache.commit(counts, state.block, max_length)

    def select(self, state: VerifierState, rows: Tensor) -> VerifierState:
        """The state of ``rows`` only (sentences still decoding)."""
        return replace(state, encoder_out=self.model.encoder.reorder_encoder_out(state.encoder_out, rows),
                       cache=state.cache.select(rows))

    def positions(self, length: int, device: torch.device) -> None:
        """Build (or widen) the positional embedding table to ``length`` positions."""
        table = self._position_table
        if table is None or table.size(0) < length or table.device != device:
            self._position_table = position_table(self.decoder, length, device)


def position_table(decoder, length: int, device: torch.device) -> Optional[Tensor]:
    """The decoder's positional embeddings of ``length`` positions, L x C (row j = position j
    of a sentence; 0 holds the BOS), or None for a decoder without positions."""
    embed_positions = decoder.embed_positions
    if embed_positions is None:
        return None
    # learned positions end at max_positions; drafts past it lie beyond the maximum
    # output length and are never committed, so they may share the last position
    limit = getattr(embed_positions, "max_positions", None) or length
    dummy = torch.full((1, min(length, limit)), decoder.padding_idx + 1, dtype=torch.long, device=device)
    return embed_positions(dummy)[0]


class StaticVerifier(Verifier):
    """The verifier over static buffers (``static_rows``): the block forward of each
    block size is recorded once as a CUDA graph and replayed (``capture``), or run eagerly
    on the same buffers (``capture=False``, for tests)."""

    def __init__(self, model, temperature: float = 1.0, options: GraphOptions = GraphOptions()):
        super().__init__(model, temperature)
        self.pool = StaticPool(self.decoder, options.capture)

    def start(self, net_input: Dict[str, Tensor], capacity: int) -> VerifierState:
        encoder_out = self.model.encoder.forward_torchscript(net_input)
        if self.refresh_lean():  # the recorded graphs read the old weights' copies
            self.pool = StaticPool(self.decoder, self.pool.capture)
        rows = self.pool.load(encoder_out, capacity)
        return VerifierState(encoder_out, rows.cache(), static=rows)

    def score(self, state: VerifierState, last_tokens: Tensor, drafts: Tensor) -> Tuple[Tensor, Tensor]:
        """As ``Verifier.score``; the results are the graph's output memory, valid until the next ``score``."""
        rows, used, n = state.static, last_tokens.size(0), drafts.size(1) + 1
        assert used == rows.used, f"{used} rows scored, {rows.used} in the buffers"
        tokens = rows.buffer(f"tokens{n}", (n,), torch.long)
        tokens[:used, 0] = last_tokens
        tokens[:used, 1:] = drafts
        table = rows.constant("positions", lambda: position_table(self.decoder, rows.columns, rows.device))
        lprobs, x = rows.graphs.run(("score", n), lambda: self.forward(tokens, rows.cache(), table, rows.columns))
        state.block = n
        return lprobs[:used], x[:used]

    def commit(self, state: VerifierState, counts: Tensor, max_length: Optional[int] = None) -> None:
        state.static.length[: counts.size(0)] += counts

    def select(self, state: VerifierState, rows: Tensor) -> VerifierState:
        static = self.pool.select(state.static, rows)
        return VerifierState(self.model.encoder.reorder_encoder_out(state.encoder_out, rows), static.cache(),
                             state.block, static)
