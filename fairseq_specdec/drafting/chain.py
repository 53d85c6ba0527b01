"""Drafting with the chain drafter (``specdec_chain_drafter``, EAGLE-style) next to its
verifier, over a preallocated cache that persists between iterations.

The drafter's layer keeps the keys/values of one slot per committed token (the verifier's
state fused with the token after it, handed over by ``observe``), so an iteration runs
the layer over the k + 1 new slots of the block just verified, then k - 1 chained steps,
never the whole prefix. The chained steps' entries are written past the committed slots
and overwritten by the next ``observe``. The layers run through ``lean_layers``, the
same computation as the model's teacher-forced forward (tested equal).
"""
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from fairseq_specdec.drafting.base import TrainedDrafter, encode_source, top_tokens
from fairseq_specdec.verification.cache import DecoderCache
from fairseq_specdec.verification.lean_layers import allocate_cache, run_block, unsupported_layer_options
from fairseq_specdec.verification.lean_weights import Dense, LeanDecoder, dense, dense_of
from fairseq_specdec.verification.static_rows import GraphOptions, StaticPool, StaticRows

INITIAL_SLOTS = 64  # cache entries per row at the start of a batch; grows when needed


@dataclass
class ChainState:
    encoder_out: Dict[str, List[Tensor]]  # the source, encoded (the verifier's when shared)
    cache: DecoderCache  # the drafter layers' keys/values of the committed slots (BOS slot included)
    predicted: Tensor  # B x C: the predicted verifier state after the last committed slot
    static: Optional[StaticRows] = None  # ``StaticChainDrafter``: the buffers cache and predicted live in


class ChainDrafter(TrainedDrafter):
    """Drafts with a trained ``specdec_chain_drafter``: k steps, each predicting the
    verifier's next state, reading its token through the verifier's output projection,
    and feeding (predicted state, token) back in as the next slot."""

    def __init__(self, model, tgt_dict, verifier=None, shortlist: Optional[Tensor] = None):
        """``shortlist``: the token ids drafts are chosen among (``draft_vocab``); None: all."""
        for layer in model.decoder.layers:
            reason = unsupported_layer_options(layer)
            if reason is not None:
                raise ValueError(f"chain drafters with {reason} are not supported")
        super().__init__(model, tgt_dict, verifier)
        self.shortlist = shortlist
        self._shortlist_projection: Optional[Dense] = None  # the output projection's rows of the shortlist
        self.verifier = verifier
        # the drafter's weights as the lean forward reads them
        self.lean = self._lean(LeanDecoder.of(model.decoder, extra=("fuse", "state_head")))

    def _lean(self, lean: LeanDecoder) -> LeanDecoder:
        """``lean`` reading the verifier's output projection where the drafter's holds the same
        values (a drafter trained with shared embeddings next to it): one copy of the vocabulary's
        weights streams through the caches per step, not two."""
        own = getattr(self.model.decoder, "output_projection", None)
        theirs = getattr(getattr(self.verifier, "decoder", None), "output_projection", None)
        if lean.output is None or not isinstance(theirs, nn.Linear) or theirs.weight is own.weight:
            return lean
        a, b = own.weight, theirs.weight
        if (a.shape, a.dtype, a.device) != (b.shape, b.dtype, b.device) or (own.bias is None) != (theirs.bias is None):
            return lean
        if not torch.equal(a, b) or (own.bias is not None and not torch.equal(own.bias, theirs.bias)):
            return lean
        return replace(lean, output=dense([theirs]))

    def slot_inputs(self, states: Tensor, next_tokens: Tensor) -> Tensor:
        """The decoder's ``slot_inputs`` (B x S x C) through the lean view of its fuse layer."""
        return self.model.decoder.slot_inputs(states, next_tokens, fuse=self.lean.extra["fuse"])

    def logits(self, predicted: Tensor) -> Tensor:
        """B x V logits of the token after each predicted state (B x C), the tokens a draft
        may never hold at -inf."""
        return self.forbid(self.lean.logits(self.model.decoder, predicted))

    def refresh_lean(self) -> bool:
        """Re-read the weights' view if the drafter's parameters changed (True then)."""
        lean = self.lean.current(self.model.decoder)
        if lean is self.lean:
            return False
        self.lean = self._lean(lean)
        return True

    def next_token(self, predicted: Tensor, confidence: bool) -> Tuple[Tensor, Optional[Tensor]]:
        """The token read from each predicted state (B x C), and with ``confidence`` its
        softmax probability (over the shortlist, when drafting over one)."""
        if self.shortlist is None:
            logits = self.logits(predicted)  # B x V
        else:
            projection = self._shortlist_projection
            if projection is None or projection.weight.device != predicted.device or \
                    projection.weight.dtype != predicted.dtype:
                self.shortlist = self.shortlist.to(predicted.device)
                weight = self.model.decoder.output_projection.weight.detach().index_select(0, self.shortlist)
                projection = self._shortlist_projection = dense_of(weight.to(predicted.dtype))  # V' x C rows
            logits = projection(predicted)  # B x V'
        if confidence:
            index, prob = top_tokens(logits)
        else:
            index, prob = logits.argmax(-1), None
        return (index if self.shortlist is None else self.shortlist[index]), prob

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> ChainState:
        encoder_out = encode_source(self, net_input, verifier_encoder_out)
        decoder = self.model.decoder
        self.refresh_lean()
        cache = allocate_cache(decoder, encoder_out, INITIAL_SLOTS)
        bsz = cache.length.size(0)
        bos = torch.full((bsz,), self.bos, dtype=torch.long, device=cache.length.device)
        predicted = self._states(decoder.start_input(bsz, bos), cache)[:, 0]
        cache.commit(torch.ones_like(bos), 1, max_length=1)
        return ChainState(encoder_out, cache, predicted)

    def _states(self, inputs: Tensor, cache: DecoderCache, width: Optional[int] = None) -> Tensor:
        """Predicted verifier states (B x n x C) after n new slot inputs per row."""
        decoder = self.model.decoder
        if decoder.layernorm_embedding is not None:
            inputs = decoder.layernorm_embedding(inputs)
        return self.lean.extra["state_head"](run_block(self.lean, inputs, cache, width))

    def observe(self, state: ChainState, states: Tensor, tokens: Tensor, counts: Tensor) -> ChainState:
        """A slot per committed token: the verifier's state ``states[:, i]`` (after block
        input i) fused with ``tokens[:, i]`` (committed after it), for ``i < counts[b]``."""
        n = states.size(1)
        predicted = self._states(self.slot_inputs(states, tokens[:, :n]), state.cache)  # B x n x C
        last = (counts - 1).view(-1, 1, 1).expand(-1, 1, predicted.size(2))
        state.cache.commit(counts, n)
        return replace(state, predicted=predicted.gather(1, last)[:, 0])

    def select(self, state: ChainState, rows: Tensor) -> ChainState:
        return ChainState(self.model.encoder.reorder_encoder_out(state.encoder_out, rows),
                          state.cache.select(rows), state.predicted[rows])

    def max_positions(self) -> int:
        return 1 << 30  # no positional embeddings

    def propose(self, state: ChainState, prefix: Optional[Tensor], block_size: int) -> Tensor:
        """B x k drafts (``prefix`` is not read: the committed slots are cached)."""
        return self.chain(tightened(state, prefix), block_size, confidence=False)[0]

    def propose_with_confidence(self, state: ChainState, prefix: Optional[Tensor],
                                block_size: int) -> Tuple[Tensor, Tensor]:
        """B x k drafts and the drafter's softmax probability of each (B x k)."""
        return self.chain(tightened(state, prefix), block_size, confidence=True)

    stepwise = True  # ``propose_stepwise`` can stop the chain after any step

    def propose_stepwise(self, state: ChainState, prefix: Optional[Tensor], block_size: int,
                         keep_going: Callable[[Tensor, Tensor], bool]) -> Tuple[Tensor, Tensor]:
        """Up to k drafts (B x j) and their probabilities (B x j): after each step
        ``keep_going(tokens, probs)`` (the step's B tokens and probabilities) says whether
        to chain one more."""
        state = tightened(state, prefix)
        state.cache.reserve(block_size)
        return self.run_chain(state.cache, state.predicted, block_size, True, keep_going=keep_going)

    def chain(self, state: ChainState, block_size: int, confidence: bool) -> Tuple[Tensor, Optional[Tensor]]:
        state.cache.reserve(block_size)
        return self.run_chain(state.cache, state.predicted, block_size, confidence)

    def run_chain(self, cache: DecoderCache, predicted: Tensor, block_size: int, confidence: bool,
                  width: Optional[int] = None, keep_going: Optional[Callable[[Tensor, Tensor], bool]] = None,
                  ) -> Tuple[Tensor, Optional[Tensor]]:
        """k drafts (B x k) chained from ``predicted`` (B x C) over ``cache``, and their
        probabilities when ``confidence``; the chained slots' entries are written past the
        committed ones and the cache's lengths stay. ``keep_going`` (see ``propose_stepwise``)
        may end the chain before k."""
        decoder = self.model.decoder
        scratch = replace(cache)  # shares the buffers; its lengths move past the committed slots
        tokens, probs = [], []
        for i in range(block_size):
            token, prob = self.next_token(predicted, confidence)
            tokens.append(token)
            probs.append(prob)
            if keep_going is not None and not keep_going(token, prob):
                break
            if i + 1 < block_size:
                predicted = self._states(self.slot_inputs(predicted.unsqueeze(1), token.unsqueeze(1)), scratch,
                                         width)[:, 0]
                scratch.commit(torch.ones_like(token), 1)
        return torch.stack(tokens, 1), (torch.stack(probs, 1) if confidence else None)


def tightened(state: ChainState, prefix: Optional[Tensor]) -> ChainState:
    """``state`` with its cache's host-side bound cut to the prefix width: the longest
    committed length, one slot per committed token (``observe`` lets the bound grow by
    the whole block, which overstates rows that accepted fewer)."""
    if prefix is not None:
        state.cache.bound = min(state.cache.bound, prefix.size(1))
    return state


class StaticChainDrafter(ChainDrafter):
    """The chain drafter over static buffers (``static_rows``): its k chained steps, and
    the forward over a verified block's slots, each recorded once as a CUDA graph per block
    size and replayed (``capture``), or run eagerly on the same buffers (``capture=False``)."""

    stepwise = False  # a recorded chain runs all its k steps
    static = True  # fixed shapes: observes every verified block as it comes

    def __init__(self, model, tgt_dict, verifier=None, shortlist: Optional[Tensor] = None,
                 options: GraphOptions = GraphOptions()):
        super().__init__(model, tgt_dict, verifier, shortlist)
        self.pool = StaticPool(model.decoder, options.capture)

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> ChainState:
        encoder_out = encode_source(self, net_input, verifier_encoder_out)
        decoder = self.model.decoder
        if self.refresh_lean():  # the recorded graphs read the old weights' copies
            self.pool = StaticPool(decoder, self.pool.capture)
        rows = self.pool.load(encoder_out, 1)  # the buffers at hand; widened when short
        bsz = rows.used
        bos = torch.full((rows.rows,), self.bos, dtype=torch.long, device=rows.device)
        first = self._states(decoder.start_input(rows.rows, bos), rows.cache(), rows.columns)[:, 0]  # rows x C
        predicted = rows.buffer("predicted", tuple(first.shape[1:]), first.dtype)
        predicted.copy_(first)
        rows.length[:bsz] = 1
        return ChainState(encoder_out, rows.cache(bound=1), predicted, rows)

    def observe(self, state: ChainState, states: Tensor, tokens: Tensor, counts: Tensor) -> ChainState:
        n, used = states.size(1), counts.size(0)
        assert used == state.static.used, f"{used} rows observed, {state.static.used} in the buffers"
        rows = self._room(state, n)
        slot_states = rows.buffer(f"states{n}", tuple(states.shape[1:]), states.dtype)
        slot_tokens = rows.buffer(f"tokens{n}", (n,), torch.long)
        slot_states[:used] = states
        slot_tokens[:used] = tokens[:, :n]
        decoder = self.model.decoder
        predicted = rows.graphs.run(("observe", n), lambda: self._states(
            self.slot_inputs(slot_states, slot_tokens), rows.cache(), rows.columns))  # rows x n x C
        last = (counts - 1).view(-1, 1, 1).expand(-1, 1, predicted.size(2))
        state.predicted[:used] = predicted[:used].gather(1, last)[:, 0]
        rows.length[:used] += counts
        state.cache.bound += n
        return state

    def chain(self, state: ChainState, block_size: int, confidence: bool) -> Tuple[Tensor, Optional[Tensor]]:
        rows, used = self._room(state, block_size), state.static.used
        predicted = state.predicted
        tokens, probs = rows.graphs.run(("chain", block_size, confidence), lambda: self.run_chain(
            rows.cache(), predicted, block_size, confidence, rows.columns))
        return tokens[:used], (probs[:used] if confidence else None)

    def select(self, state: ChainState, rows: Tensor) -> ChainState:
        static = self.pool.select(state.static, rows)
        return ChainState(self.model.encoder.reorder_encoder_out(state.encoder_out, rows),
                          static.cache(state.cache.bound), static.buffers["predicted"], static)

    def _room(self, state: ChainState, n: int) -> StaticRows:
        """The state's buffers, widened first when n more entries past the bound do not fit."""
        if state.cache.bound + n > state.static.columns:
            static = self.pool.widen(state.static, state.cache.bound + n)
            state.static, state.cache = static, static.cache(state.cache.bound)
            state.predicted = static.buffers["predicted"]
        return state.static
