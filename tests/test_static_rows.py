"""The static buffers under CUDA graphs (fairseq_specdec/verification/static_rows.py), on hand-built
rows of a real fairseq decoder: batches loaded into idle buffers, finished rows leaving
(in place, or into the buffers of a smaller power of two), buffers widened, reused and
grown; and the graph replayer's eager mode. No training, no GPU."""
import pytest
import torch

import fairseq_specdec  # noqa: F401
from fairseq_specdec.verification.static_rows import (
    COLUMN_STEP, SOURCE_STEP, Replayer, StaticPool, row_bucket, round_up)

from scripted_models import bigram_verifier, table_from, tiny_dictionary

D = tiny_dictionary()
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def decoder():
    return bigram_verifier(table_from({}), D).decoder  # 2 layers, 2 heads of 8 dims


def test_row_buckets_and_steps():
    assert [row_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 31, 32, 33)] == [1, 2, 4, 4, 8, 8, 16, 32, 32, 64]
    assert [round_up(n, 64) for n in (1, 64, 65, 130)] == [64, 64, 128, 192]


def marked_source(bsz, src_len, heads=2, dim=8):
    """Per layer, keys/values whose every entry is its row's number (1-based)."""
    rows = torch.arange(1, bsz + 1, dtype=torch.float).view(bsz, 1, 1, 1).expand(bsz, heads, src_len, dim)
    return [(rows.clone(), -rows.clone()) for _ in range(2)]


def loaded(decoder, bsz=3, src_len=5):
    pool = StaticPool(decoder, capture=False)
    rows = pool.rows_for(bsz, columns=10, source_len=src_len, device=CPU, dtype=torch.float)
    mask = torch.ones(bsz, 1, 1, src_len, dtype=torch.bool)
    mask[1, ..., 3:] = False  # row 1's source is shorter
    rows.load_source(marked_source(bsz, src_len), mask, bsz, src_len)
    for layer, (keys, values) in enumerate(rows.target):  # target entries: 10 * row + column
        keys.copy_(10 * torch.arange(rows.rows).view(-1, 1, 1, 1) + torch.arange(rows.columns).view(1, 1, -1, 1))
        values.copy_(-keys)
    rows.length[:bsz] = torch.tensor([4, 2, 7, 5])[:bsz]
    rows.buffer("predicted", (3,), torch.float)[:bsz] = torch.arange(1.0, bsz + 1).view(-1, 1).expand(-1, 3)
    return pool, rows


def test_a_batch_fills_the_first_rows_and_the_rest_idle(decoder):
    pool, rows = loaded(decoder)
    assert (rows.rows, rows.columns, rows.source_len) == (4, COLUMN_STEP, SOURCE_STEP)
    assert rows.used == 3
    assert rows.source_mask[:3, 0, 0, :6].tolist() == [[True] * 5 + [False], [True] * 3 + [False] * 3,
                                                       [True] * 5 + [False]]
    assert rows.source_mask[3, 0, 0].tolist() == [True] + [False] * (SOURCE_STEP - 1)  # idle: one position
    assert rows.source[0][0][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 0.0]
    cache = rows.cache(bound=7)
    assert cache.length is rows.length and cache.target is rows.target and cache.bound == 7


def test_rows_leave_in_place_within_the_power_of_two(decoder):
    pool, rows = loaded(decoder)
    keys_before = [k.clone() for k, _ in rows.target]
    kept = pool.select(rows, torch.tensor([2, 0]))  # 2 rows: the power of two drops to 2
    assert kept is not rows and kept.rows == 2 and kept.used == 2
    assert kept.length.tolist() == [7, 4]
    assert kept.source[1][0][:, 0, 0, 0].tolist() == [3.0, 1.0]
    for (keys, _), before in zip(kept.target, keys_before):
        assert torch.equal(keys, before[[2, 0]])
    assert kept.buffers["predicted"].tolist() == [[3.0] * 3, [1.0] * 3]
    again = pool.select(kept, torch.tensor([1]))  # one row left: the 1-row buffers
    assert again.rows == 1 and again.length.tolist() == [4]
    # three rows of four stay where they are: moved to the front of the same buffers
    pool, rows = loaded(decoder, bsz=4)
    kept = pool.select(rows, torch.tensor([0, 1, 3]))
    assert kept is rows and kept.used == 3
    assert kept.length.tolist() == [4, 2, 5, 0]  # the idle row: empty
    assert kept.source_mask[1, 0, 0, :6].tolist() == [True, True, True, False, False, False]
    assert kept.source_mask[3, 0, 0].tolist() == [True] + [False] * (SOURCE_STEP - 1)
    assert kept.target[0][0][2, 0, :, 0].tolist() == (30 + torch.arange(COLUMN_STEP)).tolist()


def test_rows_shift_down_in_place_and_a_finished_batch_moves_nothing(decoder):
    pool, rows = loaded(decoder, bsz=4)
    before = rows.target[1][1].clone()
    kept = pool.select(rows, torch.tensor([1, 2, 3]))  # every row moves one place up, overlapping
    assert kept is rows and kept.length.tolist() == [2, 7, 5, 0]
    assert torch.equal(kept.target[1][1][:3], before[1:])
    assert kept.buffers["predicted"][:3, 0].tolist() == [2.0, 3.0, 4.0]
    done = pool.select(kept, torch.tensor([], dtype=torch.long))
    assert done is kept and done.used == 0 and sorted(pool.by_rows) == [4]  # no 1-row buffers made for it


def test_widening_keeps_every_entry(decoder):
    pool, rows = loaded(decoder)
    wider = pool.widen(rows, COLUMN_STEP + 1)
    assert wider.columns == 2 * COLUMN_STEP and pool.by_rows[4] is wider
    assert wider.used == 3 and wider.length.tolist()[:3] == [4, 2, 7]
    for (keys, _), (old, _) in zip(wider.target, rows.target):
        assert torch.equal(keys[:3, :, :COLUMN_STEP], old[:3])
    assert torch.equal(wider.source_mask[:3], rows.source_mask[:3])
    assert torch.equal(wider.buffers["predicted"][:3], rows.buffers["predicted"][:3])


def test_buffers_are_reused_and_grow_only_when_short(decoder):
    pool = StaticPool(decoder, capture=False)
    first = pool.rows_for(3, columns=20, source_len=9, device=CPU, dtype=torch.float)
    assert pool.rows_for(4, columns=COLUMN_STEP, source_len=SOURCE_STEP, device=CPU, dtype=torch.float) is first
    longer = pool.rows_for(2 + 1, columns=COLUMN_STEP + 1, source_len=5, device=CPU, dtype=torch.float)
    assert longer is not first and (longer.columns, longer.source_len) == (2 * COLUMN_STEP, SOURCE_STEP)
    assert pool.rows_for(1, columns=5, source_len=5, device=CPU, dtype=torch.float).rows == 1
    assert pool.rows_for(4, columns=5, source_len=5, device=CPU, dtype=torch.double) is not longer


def test_eager_replayer_runs_every_call():
    calls = []
    replayer = Replayer(capture=False)
    assert replayer.run(("a",), lambda: calls.append(1) or 5) == 5
    assert replayer.run(("a",), lambda: calls.append(2) or 6) == 6
    assert calls == [1, 2] and replayer.graphs == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_captured_graph_replays_on_new_inputs():
    """A recorded graph reads its input buffer anew at every replay."""
    replayer = Replayer(capture=True)
    x = torch.zeros(4, device="cuda")
    out = [replayer.run(("double",), lambda: x * 2 + 1) for _ in range(1)][0]
    assert out.tolist() == [1.0] * 4
    x.copy_(torch.arange(4.0, device="cuda"))
    again = replayer.run(("double",), lambda: x * 100)  # not called: the recorded graph replays
    assert again.data_ptr() == out.data_ptr()
    assert again.tolist() == [1.0, 3.0, 5.0, 7.0]
