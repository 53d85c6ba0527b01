"""Scripted models for generator tests that need no training: a real fairseq Transformer
whose weights make it a *bigram table* (the next token's logits depend only on the
previous token), and a drafter that proposes fixed tokens.

The verifier: one-hot token embeddings (embedding width = vocabulary size), no positions,
pre-norm layers whose attention and feed-forward outputs are zeroed (so each residual
stream carries the one-hot input unchanged), no final norm, and an output projection
that holds the table: logits of token j after token p = ``table[p, j]``. fairseq's own
``SequenceGenerator`` and the plugin's generators run it like any other checkpoint, and
a test can write down the exact tokens and scores to expect.
"""
from types import SimpleNamespace
from typing import Dict, List

import torch
from fairseq import options
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel

WORDS = "a b c d e f g h i j k l".split()


def tiny_dictionary() -> Dictionary:
    """16 symbols: the 4 specials (bos 0, pad 1, eos 2, unk 3), then a=4 ... l=15."""
    d = Dictionary()
    for w in WORDS:
        d.add_symbol(w)
    assert len(d) == 16
    return d


def bigram_verifier(table: torch.Tensor, dictionary: Dictionary) -> TransformerModel:
    """A Transformer that scores ``table[p]`` (V logits) after previous token p."""
    vocab = len(dictionary)
    assert table.shape == (vocab, vocab), f"the table must be {vocab} x {vocab}, got {tuple(table.shape)}"
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "unused-data-dir", "--task", "translation", "--arch", "transformer",
        "--encoder-layers", "1", "--decoder-layers", "2",
        "--encoder-embed-dim", str(vocab), "--decoder-embed-dim", str(vocab),
        "--encoder-ffn-embed-dim", "8", "--decoder-ffn-embed-dim", "8",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
        "--decoder-normalize-before", "--no-decoder-final-norm", "--no-token-positional-embeddings",
        "--no-scale-embedding", "--dropout", "0"])
    torch.manual_seed(0)
    model = TransformerModel.build_model(args, SimpleNamespace(source_dictionary=dictionary,
                                                               target_dictionary=dictionary))
    decoder = model.decoder
    with torch.no_grad():
        decoder.embed_tokens.weight.copy_(torch.eye(vocab))
        for layer in decoder.layers:
            for linear in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        decoder.output_projection.weight.copy_(table.t())  # logits[j] = sum_p onehot[p] * table[p, j]
    return model.eval()


def table_from(rows: Dict[int, Dict[int, float]], vocab: int = 16, rest: float = -10.0) -> torch.Tensor:
    """A V x V logit table: ``rows[p][j]`` where given, ``rest`` elsewhere."""
    table = torch.full((vocab, vocab), rest)
    for p, row in rows.items():
        for j, logit in row.items():
            table[p, j] = logit
    return table


def sample(sources: List[List[int]], dictionary: Dictionary) -> Dict:
    """A fairseq batch of the given sources (eos appended, left-padded as fairseq does)."""
    rows = [torch.tensor(s + [dictionary.eos()]) for s in sources]
    width = max(len(r) for r in rows)
    src = torch.full((len(rows), width), dictionary.pad())
    for i, r in enumerate(rows):
        src[i, width - len(r):] = r
    return {"id": torch.arange(len(rows)),
            "net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(r) for r in rows])}}


class FixedDrafter:
    """Drafts, for every row, the next k tokens of ``script`` after the committed prefix
    (``script[n:n+k]`` where n tokens are committed), padded with ``filler``."""

    def __init__(self, script: List[int], filler: int, pad: int):
        self.script, self.filler, self.pad = script, filler, pad
        self.proposals: List[List[List[int]]] = []  # per call: the drafts of each row

    def start(self, net_input, verifier_encoder_out=None):
        return None

    def observe(self, state, states, tokens, counts):
        return state

    def select(self, state, rows):
        return state

    def max_positions(self) -> int:
        return 1 << 30

    def propose(self, state, prefix: torch.Tensor, block_size: int) -> torch.Tensor:
        drafts = []
        for row in prefix.tolist():
            n = sum(t != self.pad for t in row) - 1  # committed tokens after the BOS
            cont = self.script[n:n + block_size]
            drafts.append(cont + [self.filler] * (block_size - len(cont)))
        self.proposals.append(drafts)
        return torch.tensor(drafts, dtype=torch.long)
