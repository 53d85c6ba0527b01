"""Static buffers and CUDA graphs for the decoding loop's fixed-shape forwards.

On a GPU at batch 1 a forward of a small Transformer costs mostly kernel launches and
Python, not arithmetic. A CUDA graph records the kernels of one call and replays them
with one launch, on the very same memory. So a graphed forward reads and writes only
static buffers (``StaticRows``):

- a fixed number of rows: the batch rounded up to a power of two; the extra rows compute
  idly (their outputs are never read);
- a fixed number of cache columns and source positions, rounded up to whole steps; the
  attention reads all of them under the per-row masks (masked columns weigh nothing);
- rows that finish leave by moving the others to the front (``StaticPool.select``), into
  the buffers of a smaller power of two when the count drops below one; buffers grow,
  rarely, by whole steps (``StaticPool.widen``), and grown buffers capture anew.

With ``capture=False`` the same static path runs eagerly: that is how the tests check it
on a machine without a GPU.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from fairseq_specdec.verification.cache import DecoderCache, KeysValues
from fairseq_specdec.verification.lean_layers import source_cache

COLUMN_STEP = 64  # cache columns are allocated in multiples of this
SOURCE_STEP = 32  # source positions too


@dataclass(frozen=True)
class GraphOptions:
    """How the plugin's generators run their fixed-shape forwards (``--cuda-graphs``)."""

    capture: bool = True  # record CUDA graphs and replay them; False: static buffers, eager (CPU tests)


def row_bucket(rows: int) -> int:
    """The static row count that holds ``rows`` rows: the next power of two."""
    return 1 << max(rows - 1, 0).bit_length()


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def grown(needed: int, have: int) -> int:
    """``have`` when it holds ``needed``, else at least twice ``have`` (growth stays rare)."""
    return have if needed <= have else max(needed, 2 * have)


class Replayer:
    """One CUDA graph per key, recorded on the key's first call and replayed after.

    ``forward`` must read and write only tensors whose memory stays the same for every
    call with that key, and be idempotent (called twice with the same inputs, it writes the
    same values): the first call runs it once eagerly, outside the capture, so that lazy
    initialisation (cuBLAS handles, moved index tensors) does not happen inside it. What
    a replay returns is the graph's own output memory: valid until the next replay of the key.
    """

    def __init__(self, capture: bool, device: Optional[torch.device] = None):
        self.capture, self.device = capture, device  # device: the GPU the buffers live on
        self.graphs: Dict[tuple, tuple] = {}  # key -> (torch.cuda.CUDAGraph, its outputs)

    def run(self, key: tuple, forward: Callable[[], object]):
        if not self.capture:
            return forward()
        with torch.cuda.device(self.device):  # the buffers' GPU, whichever is current
            entry = self.graphs.get(key)
            if entry is None:
                entry = self.graphs[key] = self._record(forward)
            graph, outputs = entry
            graph.replay()
        return outputs

    def _record(self, forward: Callable[[], object]) -> tuple:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # torch's shared capture stream lives on the GPU of its first use: on another GPU, record on ours
        other_gpu = self.device is not None and self.device.index not in (None, torch.cuda.current_device())
        with torch.cuda.graph(graph, stream=side if other_gpu else None):
            outputs = forward()
        return graph, outputs


class StaticRows:
    """A decoder's key/value cache, source keys/values and named inputs for a fixed number
    of rows, columns and source positions, and the graphs recorded over them. The first
    ``used`` rows are the batch's; the rest idle (length 0, attending to one source
    position)."""

    def __init__(self, decoder, rows: int, columns: int, source_len: int, device: torch.device,
                 dtype: torch.dtype, capture: bool):
        self.rows, self.columns, self.source_len = rows, columns, source_len
        self.dtype = dtype

        def zeros(*shape, kind=dtype):
            return torch.zeros(shape, dtype=kind, device=device)

        self.target: List[KeysValues] = []
        self.source: List[Optional[KeysValues]] = []
        for layer in decoder.layers:
            attn, cross = layer.self_attn, layer.encoder_attn
            self.target.append((zeros(rows, attn.num_heads, columns, attn.head_dim),
                                zeros(rows, attn.num_heads, columns, attn.head_dim)))
            self.source.append(None if cross is None else (zeros(rows, cross.num_heads, source_len, cross.head_dim),
                                                           zeros(rows, cross.num_heads, source_len, cross.head_dim)))
        self.source_mask = zeros(rows, 1, 1, source_len, kind=torch.bool)  # True: a real source position
        self.source_mask[:, ..., 0] = True
        self.length = zeros(rows, kind=torch.long)  # committed entries per row
        self.buffers: Dict[str, Tensor] = {}  # named per-row inputs (rows x ...)
        self.constants: Dict[str, Optional[Tensor]] = {}  # named tensors not per row
        self.graphs = Replayer(capture, device)
        self.used = 0

    @property
    def device(self) -> torch.device:
        return self.length.device

    def fits(self, columns: int, source_len: int, device: torch.device, dtype: torch.dtype) -> bool:
        return (columns <= self.columns and source_len <= self.source_len and self.device == device
                and self.dtype == dtype)

    def cache(self, bound: int = 0) -> DecoderCache:
        """The buffers as a ``DecoderCache`` (all rows; ``bound`` is the caller's host-side bound)."""
        return DecoderCache(source=self.source, source_mask=self.source_mask, target=self.target,
                            length=self.length, bound=bound)

    def buffer(self, name: str, shape: Tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """The named rows x ``shape`` input buffer (allocated with zeros on first use)."""
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.zeros((self.rows, *shape), dtype=dtype, device=self.device)
        return buf

    def constant(self, name: str, make: Callable[[], Optional[Tensor]]) -> Optional[Tensor]:
        """A named tensor the graphs read (made once for these buffers)."""
        if name not in self.constants:
            self.constants[name] = make()
        return self.constants[name]

    def load_source(self, source: List[Optional[KeysValues]], source_mask: Optional[Tensor], used: int,
                    src_len: int) -> None:
        """A new batch of ``used`` rows and ``src_len`` source positions: the source's
        keys/values (B x H x S x D per layer), its mask (B x 1 x 1 x S, None: no padding);
        every row's cache emptied."""
        assert used <= self.rows and src_len <= self.source_len, (
            f"{used} rows x {src_len} source positions do not fit static buffers of {self.rows} x {self.source_len}")
        for mine, new in zip(self.source, source):
            if mine is not None:
                mine[0][:used, :, :src_len].copy_(new[0])
                mine[1][:used, :, :src_len].copy_(new[1])
        self.source_mask.zero_()
        if source_mask is None:
            self.source_mask[:used, ..., :src_len] = True
        else:
            self.source_mask[:used, ..., :src_len] = source_mask
        self.source_mask[used:, ..., 0] = True
        self.length.zero_()
        self.used = used

    def adopt(self, other: "StaticRows", keep: Tensor) -> None:
        """Hold rows ``keep`` of ``other`` (which may be these buffers) as rows 0..n-1, in
        that order; the rest idle. ``other`` may have fewer columns (these were widened).
        Every row is read (an indexed copy) before any is written, so ``other`` may be ``self``."""
        n, columns, src_len = keep.numel(), min(self.columns, other.columns), min(self.source_len, other.source_len)
        target = [(k[keep, :, :columns], v[keep, :, :columns]) for k, v in other.target]
        source = [None if kv is None else (kv[0][keep, :, :src_len], kv[1][keep, :, :src_len]) for kv in other.source]
        mask, length = other.source_mask[keep, ..., :src_len], other.length[keep]
        buffers = {name: buf[keep] for name, buf in other.buffers.items()}
        for (k, v), (new_k, new_v) in zip(self.target, target):
            k[:n, :, :columns], v[:n, :, :columns] = new_k, new_v
        for mine, new in zip(self.source, source):
            if mine is not None:
                mine[0][:n, :, :src_len], mine[1][:n, :, :src_len] = new
        self.source_mask.zero_()
        self.source_mask[:n, ..., :src_len] = mask
        self.source_mask[n:, ..., 0] = True
        self.length.zero_()
        self.length[:n] = length
        for name, buf in buffers.items():
            self.buffer(name, tuple(buf.shape[1:]), buf.dtype)[:n] = buf
        self.used = n


class StaticPool:
    """A decoder's ``StaticRows``, one per row count (a power of two), reused batch after
    batch and grown when a batch needs more columns or source positions."""

    def __init__(self, decoder, capture: bool):
        self.decoder, self.capture = decoder, capture
        self.by_rows: Dict[int, StaticRows] = {}

    def rows_for(self, used: int, columns: int, source_len: int, device: torch.device,
                 dtype: torch.dtype) -> StaticRows:
        """The buffers for a batch of ``used`` rows, ``columns`` cache entries and
        ``source_len`` source positions (reallocated, larger, when the present ones are short)."""
        rows = row_bucket(used)
        have = self.by_rows.get(rows)
        if have is None or not have.fits(columns, source_len, device, dtype):
            if have is not None and have.device == device and have.dtype == dtype:
                columns, source_len = grown(columns, have.columns), grown(source_len, have.source_len)
            have = self.by_rows[rows] = StaticRows(self.decoder, rows, round_up(columns, COLUMN_STEP),
                                                   round_up(source_len, SOURCE_STEP), device, dtype, self.capture)
        return have

    def load(self, encoder_out: Dict[str, List[Tensor]], columns: int) -> StaticRows:
        """The buffers for a new batch (fairseq's encoder output of it), holding at least
        ``columns`` cache entries per row, with the source's keys/values loaded."""
        source, source_mask = source_cache(self.decoder, encoder_out)
        enc = encoder_out["encoder_out"][0]  # S x B x C
        src_len, bsz = enc.shape[:2]
        rows = self.rows_for(bsz, columns, src_len, enc.device, next(self.decoder.parameters()).dtype)
        rows.load_source(source, source_mask, bsz, src_len)
        return rows

    def select(self, current: StaticRows, keep: Tensor) -> StaticRows:
        """Keep rows ``keep`` of ``current`` (sentences still decoding), moved to the front
        of the buffers for their count."""
        if keep.numel() == 0:  # the batch is done: nothing to move
            current.used = 0
            return current
        if row_bucket(keep.numel()) == current.rows:
            target = current
        else:
            target = self.rows_for(keep.numel(), current.columns, current.source_len, current.device, current.dtype)
        target.adopt(current, keep)
        return target

    def widen(self, current: StaticRows, columns: int) -> StaticRows:
        """``current`` moved into buffers of at least ``columns`` cache entries (and twice as many as before)."""
        wider = StaticRows(self.decoder, current.rows, round_up(grown(columns, current.columns), COLUMN_STEP),
                           current.source_len, current.device, current.dtype, self.capture)
        wider.adopt(current, torch.arange(current.used, device=current.device))
        self.by_rows[current.rows] = wider
        return wider
