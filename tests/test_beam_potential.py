"""Speculative beam search's potential (benchmark.beam_replay): the tree of a drafter's
continuations, the replay count on hand-built inputs, and the recording of fairseq's own
beam search on the scripted bigram verifier (tests/scripted_models.py), where the
verifier's own table as the drafter replays every step and a wrong table none."""
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_specdec.benchmark.beam_replay import (
    BeamStep, RecordingBeamSearch, build_tree, expand_level, iteration_steps, kept_sets, tree_reach)
from scripted_models import bigram_verifier, sample, table_from, tiny_dictionary

EOS = 2
A, B, C, D, E, F, G, H, I = range(4, 13)
# fairseq's beam 2 on this table (logits after each previous token; BOS is eos):
# step 0: a, b. step 1: (a, eos) is the best candidate and is finalized; the 2nd and 3rd,
# (a, c) and (b, d), continue. step 2: (a, c, f), (b, d, g). step 3: (a, c, f, eos) is
# finalized, the second finished hypothesis: the search ends after 4 steps.
TABLE = table_from({
    EOS: {A: 0.0, B: -1.0},
    A: {C: 0.0, EOS: 0.5},
    B: {D: 0.0, E: -3.0},
    C: {F: 0.0, EOS: -1.0},
    D: {G: 0.0, H: -0.5},
    F: {EOS: 0.0, I: -1.0},
    G: {I: 0.0, EOS: -4.0},
})
KEPT = [{()}, {(A,), (B,)}, {(A, C), (B, D)}, {(A, C, F), (B, D, G)}]


class BigramDrafter:
    """A ``TreeDrafter`` whose next-token log-probabilities depend on the last token only."""

    def __init__(self, table: torch.Tensor):
        self.lprobs = torch.log_softmax(table, dim=-1)

    def start(self, roots):
        return self.lprobs[[r[-1] if r else EOS for r in roots]]

    def extend(self, parents, tokens):
        return self.lprobs[tokens]


def recorded_steps(beam: int = 2):
    d = tiny_dictionary()
    model = bigram_verifier(TABLE, d)
    recorder = RecordingBeamSearch(d)
    generator = SequenceGenerator([model], d, beam_size=beam, max_len_a=0, max_len_b=4, search_strategy=recorder)
    with torch.no_grad():
        hypos = generator.generate([model], sample([[A, B]], d))
    return recorder.take(), hypos[0][0]["tokens"].tolist()


def test_expand_level_takes_the_best_extensions_over_all_rows_without_banned_tokens():
    lprobs = torch.log_softmax(torch.tensor([[0.0, 0.0, 3.0, 1.0], [0.5, 0.0, 0.0, 2.0]]), dim=-1)
    scores = torch.tensor([0.0, -0.5])
    parents, tokens, new = expand_level(scores, lprobs, width=3, banned=[2])
    total = scores.unsqueeze(1) + lprobs
    assert list(zip(parents.tolist(), tokens.tolist())) == [(1, 3), (0, 3), (1, 0)]
    assert torch.allclose(new, torch.stack([total[1, 3], total[0, 3], total[1, 0]]))
    parents, tokens, _ = expand_level(scores, lprobs, width=1)
    assert (parents.item(), tokens.item()) == (0, 2)  # not banned: the best


def test_build_tree_is_a_beam_of_width_w_seeded_with_the_roots():
    levels = build_tree(BigramDrafter(TABLE), [()], [0.0], width=2, depth=3, banned=[EOS])
    assert [set(level) for level in levels] == KEPT  # the verifier's table: fairseq's kept sets
    wide = build_tree(BigramDrafter(TABLE), [(A,), (B,)], [-0.3, -1.3], width=3, depth=1, banned=[EOS])
    assert wide[1] == [(A, C), (B, D), (B, E)]  # (a, eos) is not a node


def test_reach_all_none_some_and_the_search_end():
    kept = [frozenset(k) for k in KEPT]
    levels = [[()], [(A,), (B,)], [(A, C), (B, D), (C, C)], [(A, C, F), (B, D, G)]]
    assert tree_reach(kept, 0, levels) == 3  # all: as deep as the tree
    assert tree_reach(kept, 0, levels[:3]) == 2  # a depth-2 tree
    assert tree_reach(kept, 0, [[()], [(A,), (C,)], *levels[2:]]) == 0  # none: (b,) is not drafted
    missing = [[()], [(A,), (B,)], [(A, C), (B, E)], [(A, C, F), (B, D, G)]]
    assert tree_reach(kept, 0, missing) == 1  # some: level 2 misses (b, d), level 3 no longer counts
    assert tree_reach(kept, 2, [[(A, C), (B, D)], [(A, C, F), (B, D, G)], [(A, C, F, I)]]) == 1  # the end


def test_iteration_steps():
    assert iteration_steps([3, 2, 1, 0], depth=8) == [4]
    assert iteration_steps([3, 2, 1, 0], depth=1) == [2, 2]
    assert iteration_steps([0, 0, 0], depth=4) == [1, 1, 1]
    assert iteration_steps([1, 5, 2, 0, 0, 0], depth=2) == [2, 3, 1]


def test_roots_of_the_first_step_are_one_empty_prefix():
    step = BeamStep(((), (), ()), (0.0, 0.0, 0.0))
    assert step.roots() == ([()], [0.0])
    step = BeamStep(((A,), (B,)), (-0.1, -0.2))
    assert step.roots() == ([(A,), (B,)], [-0.1, -0.2])


def test_recording_fairseq_beam_search_and_replaying_it():
    steps, output = recorded_steps()
    assert output == [A, EOS]  # per token (lenpen 1), -0.78 / 2 beats (a, c, f, eos)'s -1.90 / 4
    assert [set(s.hypotheses) for s in steps] == KEPT
    assert steps[0].hypotheses == ((), ())
    first = torch.log_softmax(TABLE[EOS], dim=-1)
    assert steps[1].hypotheses == ((A,), (B,))
    assert torch.allclose(torch.tensor(steps[1].scores), first[[A, B]], atol=1e-5)
    kept = kept_sets(steps)
    right = [tree_reach(kept, t, build_tree(BigramDrafter(TABLE), *s.roots(), 2, 8, [EOS]))
             for t, s in enumerate(steps)]
    assert right == [3, 2, 1, 0] and iteration_steps(right, 8) == [4]
    wrong_table = table_from({p: {H: 0.0, I: -0.1} for p in range(16)})
    wrong = [tree_reach(kept, t, build_tree(BigramDrafter(wrong_table), *s.roots(), 2, 8, [EOS]))
             for t, s in enumerate(steps)]
    assert wrong == [0, 0, 0, 0] and iteration_steps(wrong, 8) == [1, 1, 1, 1]
