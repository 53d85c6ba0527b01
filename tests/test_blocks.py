"""Block construction for Spec-Drafter training (blocks.py), the glancing picks of its
criterion, and left padding: pure tensors."""
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fairseq_specdec.training.blocks import make_block_batch, sample_cut_points  # noqa: E402
from fairseq_specdec.criterions.glancing_loss import choose_glance_positions, glance_count  # noqa: E402
from fairseq_specdec.decoding.committed import left_pad  # noqa: E402

PAD, EOS = 1, 2


def T(rows):
    return torch.tensor(rows, dtype=torch.long)


# two right-padded targets ending with eos: lengths 5 and 3 (eos counted)
TARGET = T([[5, 6, 7, 8, EOS],
            [9, 10, EOS, PAD, PAD]])


def test_make_block_batch_middle_cuts():
    batch = make_block_batch(TARGET, T([2, 1]), block_size=3, pad=PAD, eos=EOS)
    # prefixes: eos + y[:cut], left-padded to the longest (3 columns)
    assert batch.prefix.tolist() == [[EOS, 5, 6],
                                     [PAD, EOS, 9]]
    # block targets: the next 3 tokens, eos included, pad past the sentence
    assert batch.block_target.tolist() == [[7, 8, EOS],
                                           [10, EOS, PAD]]


def test_make_block_batch_cut_at_zero():
    batch = make_block_batch(TARGET, T([0, 0]), block_size=3, pad=PAD, eos=EOS)
    assert batch.prefix.tolist() == [[EOS], [EOS]]
    assert batch.block_target.tolist() == [[5, 6, 7], [9, 10, EOS]]


def test_make_block_batch_cut_at_last_token_leaves_only_eos():
    batch = make_block_batch(TARGET, T([4, 2]), block_size=3, pad=PAD, eos=EOS)
    assert batch.prefix.tolist() == [[EOS, 5, 6, 7, 8],
                                     [PAD, PAD, EOS, 9, 10]]
    assert batch.block_target.tolist() == [[EOS, PAD, PAD],
                                           [EOS, PAD, PAD]]


def test_make_block_batch_block_longer_than_sentence():
    batch = make_block_batch(TARGET, T([1, 0]), block_size=7, pad=PAD, eos=EOS)
    assert batch.prefix.tolist() == [[EOS, 5], [PAD, EOS]]
    assert batch.block_target.tolist() == [[6, 7, 8, EOS, PAD, PAD, PAD],
                                           [9, 10, EOS, PAD, PAD, PAD, PAD]]


def test_make_block_batch_block_size_one():
    batch = make_block_batch(TARGET, T([3, 1]), block_size=1, pad=PAD, eos=EOS)
    assert batch.prefix.tolist() == [[EOS, 5, 6, 7], [PAD, PAD, EOS, 9]]
    assert batch.block_target.tolist() == [[8], [10]]


def test_make_block_batch_matches_a_python_reference_on_random_targets():
    gen = torch.Generator().manual_seed(3)
    bsz, width, k = 17, 12, 4
    lengths = torch.randint(1, width + 1, (bsz,), generator=gen)
    target = torch.full((bsz, width), PAD)
    for i, n in enumerate(lengths.tolist()):
        target[i, : n - 1] = torch.randint(4, 50, (n - 1,), generator=gen)
        target[i, n - 1] = EOS
    cut = sample_cut_points(lengths, gen)
    batch = make_block_batch(target, cut, block_size=k, pad=PAD, eos=EOS)
    width_p = int(cut.max()) + 1
    for i in range(bsz):
        y = target[i, : lengths[i]].tolist()
        c = int(cut[i])
        prefix = [EOS] + y[:c]
        assert batch.prefix[i].tolist() == [PAD] * (width_p - len(prefix)) + prefix
        block = y[c:c + k]
        assert batch.block_target[i].tolist() == block + [PAD] * (k - len(block))


def test_make_block_batch_rejects_cut_outside_the_target():
    with pytest.raises(AssertionError, match="cut points"):
        make_block_batch(TARGET, T([5, 0]), block_size=2, pad=PAD, eos=EOS)  # len 5: cut <= 4
    with pytest.raises(AssertionError, match="cut points"):
        make_block_batch(TARGET, T([0, -1]), block_size=2, pad=PAD, eos=EOS)
    with pytest.raises(AssertionError, match="block size"):
        make_block_batch(TARGET, T([0, 0]), block_size=0, pad=PAD, eos=EOS)


def test_sample_cut_points_range_and_coverage():
    lengths = T([1, 2, 5, 30] * 500)
    cut = sample_cut_points(lengths, torch.Generator().manual_seed(0))
    assert cut.dtype == torch.long and cut.shape == lengths.shape
    assert bool((cut >= 0).all()) and bool((cut <= lengths - 1).all())
    assert set(cut[lengths == 1].tolist()) == {0}  # only the eos to predict
    # uniform over [0, n-1]: every cut point occurs, including the last one
    assert set(cut[lengths == 2].tolist()) == {0, 1}
    assert set(cut[lengths == 5].tolist()) == {0, 1, 2, 3, 4}
    assert len(set(cut[lengths == 30].tolist())) >= 28
    counts = torch.bincount(cut[lengths == 5], minlength=5).float()
    assert float(counts.min()) > 0.6 * 100 and float(counts.max()) < 1.4 * 100  # 500 draws, 5 values


def test_sample_cut_points_deterministic_with_a_seeded_generator():
    lengths = torch.randint(1, 40, (300,), generator=torch.Generator().manual_seed(1))
    a = sample_cut_points(lengths, torch.Generator().manual_seed(11))
    b = sample_cut_points(lengths, torch.Generator().manual_seed(11))
    c = sample_cut_points(lengths, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_cut_points_rejects_empty_targets():
    with pytest.raises(AssertionError):
        sample_cut_points(T([3, 0]))


def test_left_pad():
    rows = T([[3, 4, 5, 0],
              [6, 7, 8, 9],
              [10, 11, 12, 13]])
    assert left_pad(rows, T([2, 4, 1]), PAD).tolist() == [[PAD, PAD, 3, 4],
                                                          [6, 7, 8, 9],
                                                          [PAD, PAD, PAD, 10]]
    # the output is as wide as the longest kept row, not as the input
    assert left_pad(rows, T([1, 2, 1]), PAD).tolist() == [[PAD, 3], [6, 7], [PAD, 10]]
    assert left_pad(rows, T([4, 4, 4]), PAD).tolist() == rows.tolist()


def test_glance_count_rounds_half_up():
    wrong = T([0, 1, 2, 3, 4, 5, 6])
    assert glance_count(wrong, 0.5).tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert glance_count(wrong, 0.0).tolist() == [0] * 7
    assert glance_count(wrong, 1.0).tolist() == wrong.tolist()
    # 0.3: 0.3 -> 0, 0.6 -> 1, 0.9 -> 1, 1.2 -> 1, 1.8 -> 2
    assert glance_count(T([1, 2, 3, 4, 6]), 0.3).tolist() == [0, 1, 1, 1, 2]
    assert glance_count(wrong, 0.5).dtype == torch.long


def test_choose_glance_positions_reveals_exactly_count_valid_positions():
    gen = torch.Generator().manual_seed(5)
    bsz, k = 400, 6
    valid = torch.rand(bsz, k, generator=gen) < 0.7
    count = torch.randint(0, k + 3, (bsz,), generator=gen)  # sometimes more than the valid ones
    chosen = choose_glance_positions(valid, count, torch.Generator().manual_seed(9))
    assert chosen.dtype == torch.bool and chosen.shape == valid.shape
    assert not bool((chosen & ~valid).any()), "revealed an invalid (pad) position"
    expected = torch.minimum(count, valid.sum(1))
    assert chosen.sum(1).tolist() == expected.tolist()
    assert bool((count > valid.sum(1)).any()), "the test must cover count > number of valid positions"


def test_choose_glance_positions_is_random_but_seeded():
    valid = torch.ones(200, 8, dtype=torch.bool)
    count = torch.full((200,), 3)
    a = choose_glance_positions(valid, count, torch.Generator().manual_seed(1))
    b = choose_glance_positions(valid, count, torch.Generator().manual_seed(1))
    c = choose_glance_positions(valid, count, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # every position gets revealed sometimes: not always the first ones
    assert bool((a.sum(0) > 0).all())
    assert len(set(map(tuple, a.int().tolist()))) > 20  # many different patterns


def test_choose_glance_positions_zero_count_and_no_valid():
    valid = T([[1, 1, 0], [0, 0, 0]]).bool()
    none = choose_glance_positions(valid, T([0, 0]))
    assert not bool(none.any())
    some = choose_glance_positions(valid, T([5, 2]))
    assert some.tolist() == [[True, True, False], [False, False, False]]
