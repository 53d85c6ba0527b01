"""The verifier's block scores over its preallocated cache (fairseq_specdec/verifier.py:
start, score, commit, select) against a full, non-incremental recompute with fairseq's own
decoder forward, through several accept cycles where the rows of a batch keep different
numbers of tokens, and rows leave the batch. Run on the trained tiny verifier and on untrained verifiers of
other shapes built through fairseq's task/model API."""
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401  (registers the plugin, allow-lists checkpoint classes)
from fairseq import checkpoint_utils, options, tasks  # noqa: E402
from fairseq.models.transformer import TransformerModel  # noqa: E402

from fairseq_specdec.verification.static_rows import GraphOptions  # noqa: E402
from fairseq_specdec.verification.verifier import StaticVerifier, Verifier  # noqa: E402

TOL = 1e-5
SMALL = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--dropout", "0.1", "--attention-dropout", "0.1",
]
SHAPES = {
    "prenorm": ["--encoder-normalize-before", "--decoder-normalize-before", "--share-all-embeddings"],
    "learned_pos": ["--decoder-learned-pos", "--encoder-learned-pos", "--share-decoder-input-output-embed"],
    "separate_embeddings": [],  # no sharing at all: own input embeddings and output projection
    "layernorm_embedding": ["--layernorm-embedding", "--share-all-embeddings"],
    "prenorm_learned_pos_lnemb_out_dim": ["--decoder-normalize-before", "--decoder-learned-pos",
                                          "--layernorm-embedding", "--decoder-output-dim", "24",
                                          "--no-scale-embedding"],
    "no_positions": ["--no-token-positional-embeddings", "--share-all-embeddings"],
}

# per cycle: how many of the n = k+1 new cache entries each row keeps (the input token plus
# the accepted drafts), and which rows leave the batch afterwards (finished sentences)
CYCLES = [
    ([3, 3, 3, 3], []),  # uniform: the plain-cut path
    ([1, 6, 2, 4], []),  # different per row: the left-padded gather path
    ([6, 1, 3, 6], [1]),  # then row 1 finishes and is dropped
    ([2, 2, 2], []),  # same keep everywhere, but rows hold different lengths: still padded
    ([6, 1, 4], [0]),
    ([1, 5], []),
    ([1, 1], []),
    ([6, 3], []),
]
K = 5



def load_trained(demo_data, path):
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(path)], arg_overrides={"data": str(demo_data["bin"])})
    return models[0].eval(), task


def build_untrained(demo_data, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(demo_data["bin"]), "--task", "translation",
                                                "--arch", "transformer", *SMALL, *extra])
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    model = TransformerModel.build_model(args, task)
    return model.eval(), task


def source_batch(task, ids):
    task.load_dataset("test")
    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in ids])
    return sample["net_input"]


def make_verifier(model, static: bool):
    """The verifier with its own cache, or over static buffers (the CUDA-graph path, run eagerly)."""
    return StaticVerifier(model, options=GraphOptions(capture=False)) if static else Verifier(model)


def check_cycles(model, task, ids=(0, 5, 17, 42), static=False):
    """Drive the verifier through CYCLES and compare every block with a full recompute.
    ``static``: the verifier over static buffers (4 rows, then 2: rows leave in place and
    into smaller buffers; every block attends over all the buffers' columns)."""
    tgt_dict = task.target_dictionary
    net_input = source_batch(task, list(ids))
    src_lengths = net_input["src_lengths"]
    assert len(set(src_lengths.tolist())) > 1, "the batch must hold sources of different lengths"
    gen = torch.Generator().manual_seed(1)
    vocab = len(tgt_dict)
    verifier = make_verifier(model, static)
    checked = 0
    with torch.no_grad():
        state = verifier.start(net_input, capacity=1 + sum(max(keep) for keep, _ in CYCLES) + K + 1)
        encoder_out = state.encoder_out
        seqs = [[tgt_dict.eos()] for _ in ids]  # committed tokens, BOS (= eos) first
        for cycle, (keep, drop) in enumerate(CYCLES):
            bsz = len(seqs)
            assert len(keep) == bsz
            drafts = torch.randint(tgt_dict.nspecial, vocab, (bsz, K), generator=gen)
            last = torch.tensor([s[-1] for s in seqs])
            lengths = torch.tensor([len(s) for s in seqs])
            assert torch.equal(state.cache.length[:bsz], lengths - 1), "the cache holds every committed token but the last"
            lprobs, states = verifier.score(state, last, drafts)
            assert lprobs.shape == (bsz, K + 1, vocab) and states.shape[:2] == (bsz, K + 1)
            for b in range(bsz):
                full = torch.tensor(seqs[b] + drafts[b].tolist()).unsqueeze(0)
                enc_b = model.encoder.reorder_encoder_out(encoder_out, torch.tensor([b]))
                out = model.decoder(prev_output_tokens=full, encoder_out=enc_b)
                ref = model.get_normalized_probs(out, log_probs=True)[0, len(seqs[b]) - 1:]
                diff = (lprobs[b].float() - ref.float()).abs().max().item()
                assert diff < TOL, f"cycle {cycle}, row {b}: block scores differ from a full recompute by {diff}"
                checked += 1
            # commit: kept drafts, then a verifier token (not yet in the cache)
            for b in range(bsz):
                nxt = int(lprobs[b, keep[b] - 1].argmax())
                seqs[b] = seqs[b] + drafts[b, : keep[b] - 1].tolist() + [nxt]
            # odd cycles pass the longest length read on the host, even ones let the bound grow
            longest = max(len(s) for s in seqs) - 1 if cycle % 2 else None
            verifier.commit(state, torch.tensor(keep), max_length=longest)
            if drop:
                rows = torch.tensor([b for b in range(bsz) if b not in drop])
                state = verifier.select(state, rows)
                encoder_out = model.encoder.reorder_encoder_out(encoder_out, rows)
                seqs = [seqs[b] for b in rows.tolist()]
    assert checked == sum(len(keep) for keep, _ in CYCLES)
    return seqs


def test_select_and_commit_on_hand_built_rows(demo_data, tiny_verifier):
    """select keeps exactly the chosen rows of every part of the state; commit advances
    the lengths by the counts and narrows the attended columns to the given longest row."""
    model, task = load_trained(demo_data, tiny_verifier)
    verifier = Verifier(model)
    with torch.no_grad():
        state = verifier.start(source_batch(task, [0, 5, 17]), capacity=16)
        verifier.score(state, torch.tensor([2, 2, 2]), torch.tensor([[7, 8], [9, 10], [11, 12]]))
        verifier.commit(state, torch.tensor([3, 1, 2]))
        assert state.cache.length.tolist() == [3, 1, 2] and state.cache.bound == 3  # grown by the block (k + 1)
        verifier.commit(state, torch.tensor([0, 0, 0]), max_length=3)
        assert state.cache.bound == 3
        kept = verifier.select(state, torch.tensor([2, 0]))
    assert kept.cache.length.tolist() == [2, 3]
    for (keys, values), (kept_keys, kept_values) in zip(state.cache.target, kept.cache.target):
        assert torch.equal(kept_keys, keys[[2, 0]]) and torch.equal(kept_values, values[[2, 0]])
    enc, kept_enc = state.encoder_out["encoder_out"][0], kept.encoder_out["encoder_out"][0]
    assert torch.equal(kept_enc, enc[:, [2, 0]])
    assert torch.equal(kept.cache.source_mask, state.cache.source_mask[[2, 0]])
    assert torch.equal(kept.cache.source[0][0], state.cache.source[0][0][[2, 0]])


@pytest.mark.parametrize("static", [False, True])
def test_trained_verifier_block_scores_match_full_recompute(demo_data, tiny_verifier, static):
    model, task = load_trained(demo_data, tiny_verifier)
    assert not model.training
    seqs = check_cycles(model, task, static=static)
    # rows 2 and 3 of the batch stay to the end; each cycle commits `keep` tokens
    assert [len(s) for s in seqs] == [1 + 3 + 2 + 3 + 2 + 1 + 1 + 1 + 6, 1 + 3 + 4 + 6 + 2 + 4 + 5 + 1 + 3]


def test_trained_verifier_other_rows(demo_data, tiny_verifier):
    model, task = load_trained(demo_data, tiny_verifier)
    check_cycles(model, task, ids=(199, 3, 120, 64))


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_untrained_verifier_shapes(demo_data, shape, static):
    model, task = build_untrained(demo_data, SHAPES[shape])
    dec = model.decoder
    # the shape options really reached the model
    if "--decoder-normalize-before" in SHAPES[shape]:
        assert dec.layer_norm is not None
    if "--decoder-learned-pos" in SHAPES[shape]:
        assert type(dec.embed_positions).__name__ == "LearnedPositionalEmbedding"
    if "--layernorm-embedding" in SHAPES[shape]:
        assert dec.layernorm_embedding is not None
    if "--decoder-output-dim" in SHAPES[shape]:
        assert dec.project_out_dim is not None
    if "--no-token-positional-embeddings" in SHAPES[shape]:
        assert dec.embed_positions is None
    if shape == "separate_embeddings":
        assert dec.embed_tokens is not model.encoder.embed_tokens
        assert dec.output_projection.weight is not dec.embed_tokens.weight
    check_cycles(model, task, static=static)
