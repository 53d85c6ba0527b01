"""The CTranslate2 peer of the benchmark: the same verifier, converted with CTranslate2's
own fairseq converter, decoding the same batches (BPE'd source tokens as dictionary
strings) with ``intra_threads`` equal to torch's thread count."""
import importlib.util
import os
import shutil
import tempfile
from typing import Dict, List


def available() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


class CT2Model:
    """The verifier converted to a CTranslate2 model directory, loaded as a Translator.

    The directory is ``OUT_DIR/ct2_verifier`` when an output directory is given (kept),
    otherwise a temporary directory removed by ``close``.
    """

    def __init__(self, verifier_path: str, data_dir: str, src: str, tgt: str, src_dict, tgt_dict,
                 device: str = "cpu", fp16: bool = False, threads: int = 1, out_dir=None):
        import ctranslate2
        from ctranslate2.converters import FairseqConverter

        import fairseq_specdec  # noqa: F401  (allow-lists argparse.Namespace for torch.load)

        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        if out_dir:
            self.model_dir, self._tmp = os.path.join(out_dir, "ct2_verifier"), None
            os.makedirs(out_dir, exist_ok=True)
        else:
            self._tmp = tempfile.mkdtemp(prefix="specdec_ct2_")
            self.model_dir = os.path.join(self._tmp, "model")
        try:
            FairseqConverter(model_path=verifier_path, data_dir=data_dir, source_lang=src,
                             target_lang=tgt).convert(self.model_dir, force=True)
        except Exception as err:
            self.close()
            raise RuntimeError(f"CTranslate2 could not convert the verifier {verifier_path!r}: {err}") from err
        device_type, _, index = device.partition(":")
        self.compute_type = "float16" if fp16 else "float32"
        self.translator = ctranslate2.Translator(
            self.model_dir, device=device_type, device_index=int(index or 0), compute_type=self.compute_type,
            inter_threads=1, intra_threads=threads)
        self.threads = threads
        self.version = ctranslate2.__version__

    def source_tokens(self, src_tokens) -> List[List[str]]:
        """Dictionary strings of a (left-padded) source batch, without pad and eos: the
        converted model appends the eos itself (``add_source_eos``)."""
        skip = {self.src_dict.pad(), self.src_dict.eos()}
        return [[self.src_dict[i] for i in row if i not in skip] for row in src_tokens.tolist()]

    def close(self) -> None:
        self.translator = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class CT2Decoder:
    """Greedy (beam 1) or beam search with CTranslate2 over the benchmark's batches, with
    fairseq's length limits: at most min(a * src_len + b, max positions - 1) tokens + eos,
    where src_len counts the batch's padded source length with its eos, as fairseq does."""

    def __init__(self, ct2: CT2Model, beam_size: int, opts: Dict, max_positions: int):
        self.ct2, self.beam_size = ct2, beam_size
        self.max_len_a, self.max_len_b = opts["max_len_a"], opts["max_len_b"]
        self.max_positions = max_positions

    def prepare(self, batches):
        out = []
        for sample in batches:
            src = sample["net_input"]["src_tokens"]
            max_len = min(int(self.max_len_a * src.size(1) + self.max_len_b), self.max_positions - 1)
            out.append((self.ct2.source_tokens(src.cpu()), max_len + 1))  # + 1: the eos step
        return out

    def run(self, inputs):
        return [
            self.ct2.translator.translate_batch(
                tokens, beam_size=self.beam_size, num_hypotheses=1, max_batch_size=0,
                max_decoding_length=max_steps, min_decoding_length=1, length_penalty=1.0,
                return_scores=False)
            for tokens, max_steps in inputs
        ]

    def tokens(self, raw, batches) -> Dict[int, List[int]]:
        """Output strings back to target dictionary ids, eos appended as fairseq's hypotheses have it."""
        tgt = self.ct2.tgt_dict
        out = {}
        for results, sample in zip(raw, batches):
            for sid, result in zip(sample["id"].tolist(), results):
                out[sid] = [tgt.index(t) for t in result.hypotheses[0]] + [tgt.eos()]
        return out
