"""The lean forward's view of a decoder's weights (fairseq_specdec/verification/lean_weights.py):
transposed copies compute what the modules compute, the fused query/key/value projection
equals the three, and the view follows the model when its parameters change."""
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fairseq_specdec.verification.lean_weights import LeanDecoder, dense, dense_of  # noqa: E402
from fairseq_specdec.verification.verifier import Verifier  # noqa: E402
from test_verifier_cache import build_untrained, source_batch  # noqa: E402


def test_dense_equals_linear_transposed_on_cpu_float32_only():
    torch.manual_seed(0)
    lin = nn.Linear(16, 24)
    x = torch.randn(3, 5, 16)
    d = dense([lin])
    assert d.transposed and d.weight.shape == (16, 24)
    torch.testing.assert_close(d(x), lin(x), rtol=1e-6, atol=1e-6)
    assert not dense([lin.double()]).transposed  # other dtypes (and GPUs) keep F.linear's layout
    no_bias = dense_of(torch.randn(7, 16))
    torch.testing.assert_close(no_bias(x), x @ no_bias.weight, rtol=0, atol=0)


def test_fused_projections_equal_each_projection():
    torch.manual_seed(0)
    q, k, v = nn.Linear(8, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 8)
    x = torch.randn(2, 3, 8)
    fused = dense([q, k, v])(x)
    for i, lin in enumerate((q, k, v)):
        torch.testing.assert_close(fused[..., 8 * i:8 * (i + 1)], lin(x), rtol=1e-6, atol=1e-6)


def test_view_follows_parameter_changes(demo_data):
    model, task = build_untrained(demo_data, ["--share-all-embeddings"])
    decoder = model.decoder
    lean = LeanDecoder.of(decoder)
    assert lean.current(decoder) is lean, "unchanged parameters: the same view"
    with torch.no_grad():
        decoder.layers[0].fc1.weight.mul_(2.0)
    fresh = lean.current(decoder)
    assert fresh is not lean
    torch.testing.assert_close(fresh.layers[0].fc1.weight, decoder.layers[0].fc1.weight.t())
    decoder.double()
    assert not lean.current(decoder).layers[0].fc1.transposed


def test_verifier_reads_weights_changed_after_it_was_built(demo_data):
    """A verifier built before the model's weights change scores with the new weights."""
    model, task = build_untrained(demo_data, ["--share-all-embeddings"])
    verifier = Verifier(model)
    net_input = source_batch(task, [0, 1])
    tokens = torch.full((2,), task.target_dictionary.eos())

    def scores():
        with torch.no_grad():
            state = verifier.start(net_input, capacity=4)
            return verifier.score(state, tokens, tokens.new_empty((2, 0)))[0]

    before = scores()
    with torch.no_grad():
        model.decoder.layers[-1].fc2.bias.add_(1.0)
        model.decoder.embed_tokens.weight.mul_(1.5)
    after = scores()
    with torch.no_grad():
        enc = model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
        ref = model.get_normalized_probs(model.decoder(tokens.view(2, 1), encoder_out=enc), log_probs=True)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, rtol=1e-5, atol=1e-5)



def test_chain_drafter_reads_the_verifiers_projection_copy_when_equal(demo_data, tiny_verifier, chain_drafter):
    """A chain drafter trained with shared embeddings next to its verifier holds the same output
    projection values: its lean view reads the verifier's transposed copy (one stream per step);
    a drafter whose projection differs keeps its own."""
    from fairseq_specdec.drafting.loading import load_drafter, place_like
    from fairseq_specdec.drafting.kinds import make_proposer
    from test_verifier_cache import load_trained
    verifier, task = load_trained(demo_data, tiny_verifier)
    drafter = place_like(load_drafter(str(chain_drafter), task, verifier), verifier)
    assert torch.equal(drafter.decoder.output_projection.weight, verifier.decoder.output_projection.weight)
    proposer = make_proposer(drafter, task.target_dictionary, verifier)
    assert proposer.lean.output.weight is Verifier(verifier).lean.output.weight
    with torch.no_grad():
        drafter.decoder.output_projection.weight[5].add_(1.0)
    proposer = make_proposer(drafter, task.target_dictionary, verifier)
    assert proposer.lean.output.weight is not Verifier(verifier).lean.output.weight
    torch.testing.assert_close(proposer.lean.output.weight, drafter.decoder.output_projection.weight.t())
