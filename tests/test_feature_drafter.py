"""The drafters that read the verifier's decoder states (the feature drafter, block-wise,
and the chain drafter, EAGLE-style): what they draft while decoding equals what their
training layout computes for the same prefix, and SpecDec with them is lossless (beta=1
equals greedy) at batch 1 and 16."""
import pytest
import torch

from fairseq_specdec.feature_drafting import ChainDrafter, FeatureDrafter
from fairseq_specdec.speculative_generator import SpeculativeGenerator
from fairseq_specdec.verifier_features import TeacherVerifier

from test_speculative_lossless import assert_same_tokens, batches, decode, greedy, setup

K = 5


class Recording:
    """Wraps a drafter and records every (prefix, drafts) it proposes."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def propose(self, state, prefix, k):
        drafts = self.inner.propose(state, prefix, k)
        self.calls.append((prefix.clone(), drafts.clone()))
        return drafts


def loaded(demo_data, tiny_verifier, drafter, kind=FeatureDrafter):
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(drafter)])
    generator = task.build_generator(models, cfg.generation)
    assert isinstance(generator, SpeculativeGenerator) and type(generator.drafter) is kind
    assert generator.drafter.reuses_verifier_encoder
    return task, models, generator


def test_drafts_while_decoding_equal_the_training_layout(demo_data, tiny_verifier, feature_drafter):
    task, models, generator = loaded(demo_data, tiny_verifier, feature_drafter)
    drafter = generator.drafter
    recording = Recording(drafter)
    generator.drafter = recording
    sample = batches(task, 1)[7]
    with torch.no_grad():
        hypo = generator.generate(models, sample)[0][0]
    output = hypo["tokens"].unsqueeze(0)  # 1 x T: y_1..y_T
    eos = task.target_dictionary.eos()
    net_input = {**sample["net_input"], "prev_output_tokens": torch.cat([output.new_full((1, 1), eos), output[:, :-1]], 1)}
    teacher = TeacherVerifier(models[0], "in-memory")
    with torch.no_grad():
        states, _, encoder_out = teacher.run(net_input, like=next(drafter.model.parameters()))
        assert len(recording.calls) >= 2
        for prefix, drafts in recording.calls:
            m = int(prefix.ne(task.target_dictionary.pad()).sum()) - 1  # committed tokens
            cut = torch.tensor([m])
            hidden = drafter.model.decoder.forward_cuts(states, output, cut, K, encoder_out)[:, 0]  # 1 x k x C
            logits = drafter.model.decoder.output_layer(hidden)
            logits[..., drafter.forbidden] = float("-inf")
            assert logits.argmax(-1).tolist() == drafts.tolist(), f"after {m} committed tokens"


@pytest.mark.parametrize("which", ["feature_drafter", "chain_drafter"])
def test_state_drafters_are_lossless_at_batch_1_and_16(request, demo_data, tiny_verifier, which):
    kind = FeatureDrafter if which == "feature_drafter" else ChainDrafter
    task, models, generator = loaded(demo_data, tiny_verifier, request.getfixturevalue(which), kind)
    for batch_size in (1, 16):
        samples = batches(task, batch_size)
        want = greedy(models, task.target_dictionary, samples)
        got = decode(generator, models, samples)
        assert_same_tokens(got, want)
    stats = task.decoding_stats
    assert stats.accepted_drafts > 0
    print(f"{which}: {stats.committed_tokens / stats.iterations:.2f} tokens per iteration")


def test_chain_drafts_follow_the_teacher_forced_states(demo_data, tiny_verifier, chain_drafter):
    """Each iteration's first draft is what the teacher-forced chain predicts at that
    position (later drafts read the drafter's own predicted states, by design)."""
    task, models, generator = loaded(demo_data, tiny_verifier, chain_drafter, ChainDrafter)
    drafter = generator.drafter
    recording = Recording(drafter)
    generator.drafter = recording
    sample = batches(task, 1)[7]
    with torch.no_grad():
        output = generator.generate(models, sample)[0][0]["tokens"].unsqueeze(0)  # 1 x T
    eos = task.target_dictionary.eos()
    prev = torch.cat([output.new_full((1, 1), eos), output[:, :-1]], 1)
    net_input = {**sample["net_input"], "prev_output_tokens": prev}
    with torch.no_grad():
        states, _, encoder_out = TeacherVerifier(models[0], "in-memory").run(
            net_input, like=next(drafter.model.parameters()))
        predicted = drafter.model.decoder.forward_teacher(states, prev, output, encoder_out)  # 1 x T x C
        logits = drafter.model.decoder.output_layer(predicted)
        logits[..., drafter.forbidden] = float("-inf")
    expected = logits.argmax(-1)[0].tolist()
    assert len(recording.calls) >= 2
    for prefix, drafts in recording.calls:
        m = int(prefix.ne(task.target_dictionary.pad()).sum()) - 1  # committed tokens
        assert drafts[0, 0].item() == expected[m], f"after {m} committed tokens"


def recompute_chain(drafter, state, prefix, k):
    """Reference for ChainDrafter's cached steps: every step re-runs the whole right-padded
    sequence (the training layout) and appends its (predicted state, token) slot."""
    decoder = drafter.model.decoder
    width, bsz = prefix.size(1), prefix.size(0)
    x = torch.cat([state.slots[:, :width], state.slots.new_zeros(bsz, k, state.slots.size(2))], 1)
    length, rows, tokens = state.length.clone(), torch.arange(bsz), []
    for i in range(k):
        pad = torch.arange(width + i).unsqueeze(0) >= length.unsqueeze(1)
        predicted = decoder.predict_states(x[:, :width + i], pad, state.encoder_out)[rows, length - 1]
        logits = decoder.output_layer(predicted)
        logits[..., drafter.forbidden] = float("-inf")
        tokens.append(logits.argmax(-1))
        x[rows, length] = decoder.slot_inputs(predicted.unsqueeze(1), tokens[-1].unsqueeze(1))[:, 0]
        length = length + 1
    return torch.stack(tokens, 1)


def test_cached_chain_equals_recomputing_it_on_unequal_rows(demo_data, tiny_verifier, chain_drafter):
    task, models, generator = loaded(demo_data, tiny_verifier, chain_drafter, ChainDrafter)
    drafter, checked = generator.drafter, []

    class Checked(Recording):
        def propose(self, state, prefix, k):
            drafts = self.inner.propose(state, prefix, k)
            assert torch.equal(drafts, recompute_chain(self.inner, state, prefix, k))
            checked.append(int(state.length.min()) != int(state.length.max()))
            return drafts

    generator.drafter = Checked(drafter)
    with torch.no_grad():
        for sample in batches(task, 16)[:4]:
            generator.generate(models, sample)
    assert any(checked), "no call had rows of unequal lengths"
