"""CTranslate2 in a process of its own, run as a script (not as a module of the package:
importing the package imports torch).

    python ct2_worker.py convert VERIFIER.pt DATA_DIR SRC TGT OUT_DIR   # fairseq -> CTranslate2
    python ct2_worker.py time REQUEST.json RESULT.json                  # the timed passes

Once torch has run an operation in a process, CTranslate2 in that process slows down about
sevenfold on a small CPU (torch's OpenMP workers keep spinning and compete for the cores),
so the benchmark times CTranslate2 here: a process that never imports torch. Conversion
needs torch (CTranslate2's fairseq converter loads the checkpoint with it) and runs in a
process of its own too.

The request holds the model directory, device, threads, warm-up and repeats, the modes
(name, beam, compute type) and the batches (source token strings, at most how many
decoding steps); the result, per mode, the seconds of each timed pass (the modes of one
compute type interleaved, as in the benchmark), the hypotheses of the last pass and the process's peak RSS, and the
worker's pid, CTranslate2's version and whether torch was imported.
"""
import json
import os
import resource
import sys
import time


def convert(verifier: str, data: str, src: str, tgt: str, out: str) -> None:
    import fairseq_specdec  # noqa: F401  (allow-lists the checkpoint's classes for torch.load)
    from ctranslate2.converters import FairseqConverter

    FairseqConverter(model_path=verifier, data_dir=data, source_lang=src, target_lang=tgt).convert(out, force=True)


def timed_pass(translator, mode, batches):
    start = time.perf_counter()
    raw = [translator.translate_batch(b["tokens"], beam_size=mode["beam"], num_hypotheses=1, max_batch_size=0,
                                      max_decoding_length=b["max_steps"], min_decoding_length=1,
                                      length_penalty=1.0, return_scores=False) for b in batches]
    return time.perf_counter() - start, [[r.hypotheses[0] for r in results] for results in raw]


def time_modes(request: dict) -> dict:
    """The modes grouped by compute type: one Translator alive at a time (an idle one's
    threads would compete with the one that runs), the modes of a group interleaved."""
    import ctranslate2

    batches, modes = request["batches"], request["modes"]
    times = {m["name"]: [] for m in modes}
    last = {}
    for compute_type in dict.fromkeys(m["compute_type"] for m in modes):
        group = [m for m in modes if m["compute_type"] == compute_type]
        translator = ctranslate2.Translator(
            request["model_dir"], device=request["device"], device_index=request["device_index"],
            compute_type=compute_type, inter_threads=1, intra_threads=request["threads"])
        for _ in range(request["warmup"]):
            for m in group:
                timed_pass(translator, m, batches)
        for _ in range(request["repeats"]):
            for m in group:
                seconds, last[m["name"]] = timed_pass(translator, m, batches)
                times[m["name"]].append(seconds)
        del translator
    peak_mb = peak_rss_mb()
    return {"pid": os.getpid(), "version": ctranslate2.__version__, "torch_imported": "torch" in sys.modules,
            "modes": {name: {"times": times[name], "hypotheses": last[name], "peak_mb": peak_mb} for name in times}}


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which (unlike getrusage's ru_maxrss, kept
    across exec) starts afresh with the worker's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def supported(device: str) -> list:
    import ctranslate2

    return sorted(ctranslate2.get_supported_compute_types(device))


def main(argv) -> None:
    command = argv[0] if argv else ""
    if command == "convert" and len(argv) == 6:
        convert(*argv[1:])
    elif command == "time" and len(argv) == 3:
        with open(argv[1]) as f:
            request = json.load(f)
        with open(argv[2], "w") as f:
            json.dump(time_modes(request), f)
    elif command == "supported" and len(argv) == 2:
        print(json.dumps({"compute_types": supported(argv[1]), "version": __import__("ctranslate2").__version__}))
    else:
        sys.exit(f"usage: ct2_worker.py convert VERIFIER DATA SRC TGT OUT | time REQUEST RESULT | supported DEVICE "
                 f"(got {' '.join(argv)!r})")


if __name__ == "__main__":
    main(sys.argv[1:])
