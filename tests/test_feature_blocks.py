"""The feature drafter's sequence layout (``models/feature_layout.py``, ``training/feature_blocks.py``)
on hand-built inputs."""
import torch

from fairseq_specdec.models.feature_layout import additive_mask, block_attention_mask
from fairseq_specdec.training.feature_blocks import pick_cuts, teacher_positions, training_block_targets


def test_block_attention_mask_slots_causal_blocks_see_earlier_slots_and_themselves():
    allowed = block_attention_mask(3, torch.tensor([0, 2]), 2)
    # rows/cols: slots s0 s1 s2, block 0 (q0 q1), block 1 (q0 q1)
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],  # cut 0: no slot, its own queries
        [0, 0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 1, 1],  # cut 2: slots 0 and 1, its own queries
        [1, 1, 0, 0, 0, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(allowed, expected)


def test_decoding_layout_is_one_block_after_all_slots():
    allowed = block_attention_mask(2, torch.tensor([2]), 3)
    assert allowed[2:].all()
    assert not allowed[:2, 2:].any()


def test_additive_mask():
    mask = additive_mask(torch.tensor([[True, False]]), torch.float)
    assert mask[0, 0] == 0 and mask[0, 1] == float("-inf")


def test_training_block_targets_pads_past_the_sentence():
    pad = 1
    target = torch.tensor([[5, 6, 7, 2], [8, 2, pad, pad]])
    blocks = training_block_targets(target, 3, pad)
    assert blocks.shape == (2, 4, 3)
    assert blocks[0].tolist() == [[5, 6, 7], [6, 7, 2], [7, 2, pad], [2, pad, pad]]
    assert blocks[1].tolist() == [[8, 2, pad], [2, pad, pad], [pad] * 3, [pad] * 3]


def test_teacher_positions_score_each_block_token():
    # query i after cut m predicts y_{m+1+i}: the verifier's output at position m+i
    assert teacher_positions(4, 2).tolist() == [[0, 1], [1, 2], [2, 3], [3, 3]]


def test_pick_cuts():
    assert pick_cuts(5, 0).tolist() == [0, 1, 2, 3, 4]
    assert pick_cuts(3, 4).tolist() == [0, 1, 2]
    cuts = pick_cuts(10, 4, torch.Generator().manual_seed(0))
    assert cuts.numel() == 4 and cuts.unique().numel() == 4 and bool((cuts < 10).all())
    assert torch.equal(cuts, cuts.sort().values)
