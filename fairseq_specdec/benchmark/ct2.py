"""The CTranslate2 peer of the benchmark: the same verifier, converted with CTranslate2's
own fairseq converter, decoding the same batches (BPE'd source tokens as dictionary
strings) with ``intra_threads`` equal to torch's thread count and fairseq's length limits.

It never runs in the benchmark's (torch's) process: once torch has run an operation,
CTranslate2 in the same process is about seven times slower on a small CPU. Conversion and
the timed passes run in processes of their own (``ct2_worker.py``, a script that does not
import torch for the timing); this module prepares their inputs and reads their outputs.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from fairseq_specdec.decoding.length_limit import length_limit

WORKER = str(Path(__file__).with_name("ct2_worker.py"))
COMPUTE_TYPES = {"ct2_greedy": None, "ct2_beam5": None, "ct2_greedy_int8": "int8",
                 "ct2_greedy_int8_float32": "int8_float32"}  # None: float32, or float16 with --fp16


def available() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


def worker(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    """Run ct2_worker.py; a failure raises with the worker's last lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ct2_worker.py {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


class CT2Model:
    """The verifier converted to a CTranslate2 model directory (in a process of its own).

    The directory is ``OUT_DIR/ct2_verifier`` when an output directory is given (kept),
    otherwise a temporary directory removed by ``close``.
    """

    def __init__(self, verifier_path: str, data_dir: str, src: str, tgt: str, src_dict, tgt_dict,
                 device: str = "cpu", fp16: bool = False, threads: int = 1, out_dir=None):
        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        if out_dir:
            self.model_dir, self._tmp = os.path.join(out_dir, "ct2_verifier"), None
            os.makedirs(out_dir, exist_ok=True)
        else:
            self._tmp = tempfile.mkdtemp(prefix="specdec_ct2_")
            self.model_dir = os.path.join(self._tmp, "model")
        device_type, _, index = device.partition(":")
        self.device, self.device_index = device_type, int(index or 0)
        try:
            worker("convert", verifier_path, data_dir, src, tgt, self.model_dir)
            info = json.loads(worker("supported", device_type).stdout)
        except Exception as err:
            self.close()
            raise RuntimeError(f"CTranslate2 could not convert the verifier {verifier_path!r}: {err}") from err
        self.float_type = "float16" if fp16 else "float32"
        self.supported, self.version, self.threads = info["compute_types"], info["version"], threads
        self.facts = {}  # the last timing worker's pid, version, whether torch was imported (time_in_own_process)

    def compute_type(self, mode: str) -> str:
        return COMPUTE_TYPES[mode] or self.float_type

    def runs(self, mode: str) -> bool:
        """Whether this device supports the mode's compute type (int8 needs CPU instructions it may lack)."""
        return self.compute_type(mode) in self.supported

    def source_tokens(self, src_tokens) -> List[List[str]]:
        """Dictionary strings of a (left-padded) source batch, without pad and eos: the
        converted model appends the eos itself (``add_source_eos``)."""
        skip = {self.src_dict.pad(), self.src_dict.eos()}
        return [[self.src_dict[i] for i in row if i not in skip] for row in src_tokens.tolist()]

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class CT2Decoder:
    """Greedy (beam 1) or beam search with CTranslate2 over the benchmark's batches, with
    fairseq's length limits: at most min(a * src_len + b, max positions - 1) tokens + eos,
    where src_len counts the batch's padded source length with its eos, as fairseq does.
    ``prepare`` gives the worker's batches; ``time_in_own_process`` times them."""

    def __init__(self, ct2: CT2Model, mode: str, beam_size: int, opts: Dict, max_positions: int):
        self.ct2, self.mode, self.beam_size = ct2, mode, beam_size
        self.max_len_a, self.max_len_b = opts["max_len_a"], opts["max_len_b"]
        self.max_positions = max_positions

    def prepare(self, batches) -> List[dict]:
        out = []
        for sample in batches:
            src = sample["net_input"]["src_tokens"]
            max_len = length_limit(self.max_len_a, self.max_len_b, src.size(1), self.max_positions)
            out.append({"tokens": self.ct2.source_tokens(src.cpu()), "max_steps": max_len + 1})  # + 1: the eos step
        return out

    def tokens(self, raw, batches) -> Dict[int, List[int]]:
        """Output strings back to target dictionary ids, eos appended as fairseq's hypotheses have it."""
        tgt = self.ct2.tgt_dict
        out = {}
        for hypotheses, sample in zip(raw, batches):
            for sid, hypothesis in zip(sample["id"].tolist(), hypotheses):
                out[sid] = [tgt.index(t) for t in hypothesis] + [tgt.eos()]
        return out


def time_in_own_process(ct2: CT2Model, decoders: Dict[str, CT2Decoder], inputs: Dict[str, List[dict]],
                        warmup: int, repeats: int) -> Dict[str, dict]:
    """Warm-up and ``repeats`` interleaved timed passes of the CTranslate2 modes in a fresh
    process; per mode its times, last hypotheses and peak RSS. The worker's facts (pid,
    version, whether torch was imported) go to ``ct2.facts``."""
    first = next(iter(inputs.values()))
    assert all(batch == first for batch in inputs.values()), "the CTranslate2 modes decode the same batches"
    request = {"model_dir": ct2.model_dir, "device": ct2.device, "device_index": ct2.device_index,
               "threads": ct2.threads, "warmup": warmup, "repeats": repeats, "batches": first,
               "modes": [{"name": m, "beam": d.beam_size, "compute_type": ct2.compute_type(m)}
                         for m, d in decoders.items()]}
    with tempfile.TemporaryDirectory(prefix="specdec_ct2_time_") as tmp:
        path_in, path_out = os.path.join(tmp, "request.json"), os.path.join(tmp, "result.json")
        with open(path_in, "w") as f:
            json.dump(request, f)
        worker("time", path_in, path_out)
        with open(path_out) as f:
            result = json.load(f)
    ct2.facts = {k: result[k] for k in ("pid", "version", "torch_imported")}
    return result["modes"]
