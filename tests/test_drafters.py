"""Drafters without trained models: the oracle's proposals on hand-built prefixes, and the
test that decides whether a drafter may reuse the verifier's encoder output."""
import copy
from argparse import Namespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase
from torch.nn import Embedding

from fairseq_specdec.benchmark.oracle import OracleDrafter
from fairseq_specdec.drafting.base import same_encoder

PAD, EOS = 1, 2


def test_oracle_drafts_the_known_continuation():
    known = {(5, 6, EOS): [10, 11, 12, EOS], (7, EOS): [20, EOS]}
    oracle = OracleDrafter(known, PAD, EOS)
    src = torch.tensor([[5, 6, EOS], [PAD, 7, EOS]])  # left-padded, as fairseq batches sources
    state = oracle.start({"src_tokens": src})
    prefix = torch.tensor([[EOS, 10], [PAD, EOS]])  # row 0 has committed one token, row 1 none
    assert oracle.propose(state, prefix, 3).tolist() == [[11, 12, EOS], [20, EOS, EOS]]
    # finished rows leave: the state follows the kept rows
    kept = oracle.select(state, torch.tensor([1]))
    assert oracle.propose(kept, torch.tensor([[EOS, 20]]), 2).tolist() == [[EOS, EOS]]


def test_oracle_refuses_an_unknown_source():
    oracle = OracleDrafter({(5, EOS): [9, EOS]}, PAD, EOS)
    with pytest.raises(KeyError, match="no known output"):
        oracle.start({"src_tokens": torch.tensor([[6, EOS]])})


def test_oracle_pays_for_another_drafter():
    class Counting:
        calls = 0

        def start(self, net_input, verifier_encoder_out=None):
            return "state"

        def select(self, state, rows):
            return state

        def propose(self, state, prefix, k):
            Counting.calls += 1
            return torch.zeros(prefix.size(0), k, dtype=torch.long)

    oracle = OracleDrafter({(5, EOS): [9, EOS]}, PAD, EOS, cost=Counting())
    state = oracle.start({"src_tokens": torch.tensor([[5, EOS]])})
    assert oracle.propose(state, torch.tensor([[EOS]]), 2).tolist() == [[9, EOS]]
    assert Counting.calls == 1


def tiny_encoder(**overrides):
    d = Dictionary()
    for word in "a b c d".split():
        d.add_symbol(word)
    cfg = TransformerConfig.from_namespace(Namespace(
        encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=2, encoder_attention_heads=2,
        max_source_positions=64, **overrides))
    torch.manual_seed(0)
    return TransformerEncoderBase(cfg, d, Embedding(len(d), 16, d.pad()))


def test_same_encoder():
    a = tiny_encoder()
    assert same_encoder(a, copy.deepcopy(a))
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.layers[1].fc2.bias.add_(1e-3)
    assert not same_encoder(a, b)
    assert not same_encoder(a, copy.deepcopy(a).half())
    assert not same_encoder(a, tiny_encoder(encoder_normalize_before=True))
