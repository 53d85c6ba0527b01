"""The drafters that read the verifier's decoder states (the feature drafter, block-wise,
and the chain drafter, EAGLE-style): what they draft while decoding equals what their
training layout computes for the same prefix, and SpecDec with them is lossless (beta=1
equals greedy) at batch 1 and 16."""
import pytest
import torch

from fairseq_specdec.drafting.chain import ChainDrafter, StaticChainDrafter
from fairseq_specdec.drafting.feature import FeatureDrafter
from fairseq_specdec.decoding.speculative_generator import SpeculativeGenerator
from fairseq_specdec.verification import static_rows
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats
from fairseq_specdec.training.teacher import TeacherVerifier

from test_speculative_lossless import assert_same_tokens, batches, decode, greedy, lossless_batches, setup

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
    # exactly k drafts per iteration: the drafting machinery itself (adaptive drafting: test_draft_policy)
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(drafter), "--fixed-block"])
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
    for samples in lossless_batches(task).values():
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


class SlotKeeping(Recording):
    """Wraps a ChainDrafter, keeps every row's slots itself (from start, observe and
    select) and checks each proposal against ``recompute_chain`` over them."""

    def __init__(self, inner):
        super().__init__(inner)
        self.unequal = []

    def start(self, net_input, verifier_encoder_out=None):
        state = self.inner.start(net_input, verifier_encoder_out)
        bsz = net_input["src_tokens"].size(0)
        bos = torch.full((bsz,), self.inner.bos, dtype=torch.long)
        start = self.inner.model.decoder.start_input(bsz, bos)  # B x 1 x C
        self.slots = [[start[b, 0]] for b in range(bsz)]
        return state

    def observe(self, state, states, tokens, counts):
        fused = self.inner.model.decoder.slot_inputs(states, tokens[:, :states.size(1)])
        for b, count in enumerate(counts.tolist()):
            self.slots[b].extend(fused[b, :count])
        return self.inner.observe(state, states, tokens, counts)

    def select(self, state, rows):
        self.slots = [self.slots[b] for b in rows.tolist()]
        return self.inner.select(state, rows)

    def propose(self, state, prefix, k):
        drafts = self.inner.propose(state, prefix, k)
        for b, slots in enumerate(self.slots):
            encoder_out = self.inner.model.encoder.reorder_encoder_out(state.encoder_out, torch.tensor([b]))
            assert drafts[b].tolist() == recompute_chain(self.inner, torch.stack(slots), encoder_out, k)
        self.unequal.append(len({len(s) for s in self.slots}) > 1)
        return drafts


def recompute_chain(drafter, slots, encoder_out, k):
    """Reference for ChainDrafter's cached steps on one row: every step re-runs the model's
    teacher-forced forward over all the slots so far (fairseq's own layers) and appends
    its (predicted state, token) slot."""
    decoder = drafter.model.decoder
    x, tokens = slots.unsqueeze(0), []  # 1 x m x C
    for _ in range(k):
        predicted = decoder.predict_states(x, torch.zeros(1, x.size(1), dtype=torch.bool), encoder_out)[:, -1]
        logits = decoder.output_layer(predicted)
        logits[..., drafter.forbidden] = float("-inf")
        tokens.append(int(logits.argmax(-1)))
        x = torch.cat([x, decoder.slot_inputs(predicted.unsqueeze(1), logits.argmax(-1, keepdim=True))], 1)
    return tokens


def test_cached_chain_equals_recomputing_it_on_unequal_rows(demo_data, tiny_verifier, chain_drafter):
    task, models, generator = loaded(demo_data, tiny_verifier, chain_drafter, ChainDrafter)
    checked = SlotKeeping(generator.drafter)
    generator.drafter = checked
    with torch.no_grad():
        for sample in batches(task, 16)[:4]:
            generator.generate(models, sample)
    assert any(checked.unequal), "no call had rows of unequal lengths"


def static_chain_generator(generator, models, tgt_dict, capture: bool):
    """``generator``'s verifier and chain drafter over static buffers (``--cuda-graphs``;
    ``capture=False``: the same path, run eagerly)."""
    options = GraphOptions(capture=capture)
    drafter = StaticChainDrafter(generator.drafter.model, tgt_dict, verifier=models[0], options=options)
    stats = DecodingStats()
    return SpeculativeGenerator(models, tgt_dict, drafter, block_size=generator.block_size, stats=stats,
                                graphs=options), stats


def test_chain_drafting_over_static_buffers_drafts_the_same_and_is_lossless(demo_data, tiny_verifier, chain_drafter,
                                                                          monkeypatch):
    """The CUDA-graph path run eagerly: the verifier and the chain drafter over static buffers
    (rows rounded up to a power of two and leaving as sentences finish, every cache column
    attended under the mask, the drafter's buffers widened as sentences grow: columns come
    in steps of 8 here instead of 64) commit greedy's tokens after the same drafts as the
    chain drafter over its own cache."""
    monkeypatch.setattr(static_rows, "COLUMN_STEP", 8)
    task, models, eager = loaded(demo_data, tiny_verifier, chain_drafter, ChainDrafter)
    tgt_dict = task.target_dictionary
    static, stats = static_chain_generator(eager, models, tgt_dict, capture=False)
    for samples in lossless_batches(task).values():
        want = greedy(models, tgt_dict, samples)
        assert_same_tokens(decode(static, models, samples), want)
        assert_same_tokens(decode(eager, models, samples), want)
    assert stats.accepted_histogram == task.decoding_stats.accepted_histogram
    assert stats.iterations == task.decoding_stats.iterations
    assert max(rows.columns for rows in static.drafter.pool.by_rows.values()) >= 32  # widened from 8
    for pool in (static.verifier.pool, static.drafter.pool):  # rows left into smaller buffers
        assert sorted(pool.by_rows) == [1, 2, 4, 8, 16]


def test_chain_checkpoint_with_the_old_query_embeddings_decodes_the_same(demo_data, tiny_verifier, chain_drafter,
                                                                         tmp_path):
    """Chain drafters saved while the chain drafter subclassed the feature drafter carry
    its (unused) query embeddings: they load, and decode to the same tokens."""
    state = torch.load(chain_drafter, map_location="cpu", weights_only=False)
    assert "decoder.mask_embedding" not in state["model"]
    dim = state["model"]["decoder.fuse.bias"].numel()
    state["model"]["decoder.mask_embedding"] = torch.randn(dim)
    state["model"]["decoder.offset_embedding.weight"] = torch.randn(1, dim)
    old = tmp_path / "old_chain.pt"
    torch.save(state, old)
    outputs = []
    for path in (chain_drafter, old):
        task, models, generator = loaded(demo_data, tiny_verifier, path, ChainDrafter)
        sample = batches(task, 4)[0]
        with torch.no_grad():
            outputs.append([hypos[0]["tokens"] for hypos in generator.generate(models, sample)])
    assert all(torch.equal(a, b) for a, b in zip(*outputs))
