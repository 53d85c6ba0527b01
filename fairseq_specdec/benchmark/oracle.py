"""The oracle drafter: perfect drafts, read from outputs known in advance (the verifier's own
greedy output), for the benchmark's bounds (what SpecDec reaches when every draft is accepted)
and for the tests' always-right drafter. Not a decoding option: nothing in ``decoding/``
imports it."""
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor


def source_key(src_row: Tensor, pad: int) -> Tuple[int, ...]:
    """A source sentence as a hashable key: its tokens without padding."""
    return tuple(src_row[src_row.ne(pad)].tolist())


class OracleDrafter:
    """Drafts a continuation known in advance (the verifier's own greedy output), so that
    every draft is accepted: SpecDec's speed limit with a perfect drafter. With ``cost``
    (another drafter) that drafter runs too and its proposals are thrown away, so the
    limit includes the real drafting cost; without it drafting is free.

    ``known`` maps a source (its tokens without padding, as a tuple) to the target tokens
    (ending with eos) that the drafts are read from.
    """

    def __init__(self, known: Dict[Tuple[int, ...], List[int]], pad: int, eos: int, cost=None):
        self.known, self.pad, self.eos, self.cost = known, pad, eos, cost

    def start(self, net_input: Dict[str, Tensor], verifier_encoder_out=None) -> Any:
        targets = []
        for row in net_input["src_tokens"]:
            source = source_key(row, self.pad)
            if source not in self.known:
                raise KeyError(f"OracleDrafter: no known output for the source {list(source)[:12]}...")
            targets.append(self.known[source])
        cost_state = self.cost.start(net_input, verifier_encoder_out) if self.cost is not None else None
        return targets, cost_state

    def select(self, state: Any, rows: Tensor) -> Any:
        targets, cost_state = state
        kept = [targets[i] for i in rows.tolist()]
        return kept, (self.cost.select(cost_state, rows) if self.cost is not None else None)

    def observe(self, state: Any, states: Tensor, tokens: Tensor, counts: Tensor) -> Any:
        targets, cost_state = state
        if self.cost is not None:
            cost_state = self.cost.observe(cost_state, states, tokens, counts)
        return targets, cost_state

    def max_positions(self) -> int:
        return self.cost.max_positions() if self.cost is not None else 1 << 30

    def propose(self, state: Any, prefix: Tensor, block_size: int) -> Tensor:
        targets, cost_state = state
        if self.cost is not None:
            self.cost.propose(cost_state, prefix, block_size)  # paid for, not used
        done = (prefix.ne(self.pad).sum(1) - 1).tolist()  # committed tokens after the BOS
        rows = [(t[d : d + block_size] + [self.eos] * block_size)[:block_size] for t, d in zip(targets, done)]
        return torch.tensor(rows, dtype=torch.long, device=prefix.device)
