"""Build the checkpoints ``tests/test_old_checkpoints.py`` decodes, and what they decoded
to when they were saved.

Run once, by the code of the commit that adds this directory (before the packages of
drafting and verification were split out): the files it writes are committed, so later
code is tested against checkpoints and outputs it did not make itself. Rerunning it
with newer code rewrites them; do that only for a deliberate format change.

    python tests/old_checkpoints/build.py   # about two minutes on 2 CPU cores

Writes ``bin/`` (a demo slice prepared by ``scripts/prepare_bitext.sh``, 300 BPE merges: test
split only, plus the dictionaries), ``verifier.pt`` (stock fairseq transformer), one
drafter per kind (``chain.pt``, ``feature.pt``, ``spec.pt``), and ``expected/`` (the
``H-`` and ``P-`` lines of ``fairseq-generate`` for stock greedy and each decoding the
test replays). Optimizer states are dropped to keep the files small."""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USER_DIR = str(REPO / "fairseq_specdec")
sys.path.insert(0, str(HERE.parent))

from old_checkpoint_runs import DECODINGS, generate_lines  # noqa: E402

MICRO = ["--encoder-layers", "1", "--decoder-layers", "2", "--encoder-embed-dim", "32",
         "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
         "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings"]
TRAIN = ["--optimizer", "adam", "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "30",
         "--max-tokens", "2048", "--no-progress-bar", "--log-interval", "50", "--seed", "1",
         "--no-epoch-checkpoints", "--no-last-checkpoints", "--save-interval-updates", "0", "--dropout", "0.1"]
DRAFTERS = {  # file: (architecture, criterion, extra flags)
    "chain": ("specdec_drafter_chain_tiny", "specdec_chain",
              ["--kd-weight", "0.5", "--share-verifier-encoder", "--init-decoder-from-verifier"]),
    "feature": ("specdec_drafter_feature_tiny", "specdec_feature",
                ["--kd-weight", "0.5", "--share-verifier-encoder", "--init-decoder-from-verifier"]),
    "spec": ("specdec_drafter_tiny", "specdec_glancing", []),
}


def run(cmd):
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)


def slim(src: Path, dst: Path) -> None:
    """The checkpoint without its optimizer state (fairseq-generate never reads it)."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    state["last_optimizer_state"] = None
    torch.save(state, dst)


def main() -> None:
    work = Path(tempfile.mkdtemp())
    raw = work / "raw"
    run([sys.executable, REPO / "data" / "make_demo_corpus.py", "--out-dir", raw, "--train", "1500",
         "--valid", "50", "--test", "24", "--seed", "11"])
    run(["bash", REPO / "scripts" / "prepare_bitext.sh", raw, work / "prep", "en", "de", "300"])
    data = work / "prep" / "bin"
    run(["fairseq-train", data, "--task", "translation", "--arch", "transformer", *MICRO, *TRAIN,
         "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-update", "600",
         "--save-dir", work / "verifier", "--user-dir", USER_DIR])
    verifier = work / "verifier" / "checkpoint_best.pt"
    for name, (arch, criterion, extra) in DRAFTERS.items():
        run(["fairseq-train", data, "--user-dir", USER_DIR, "--task", "specdec_translation", "--arch", arch,
             *MICRO, "--criterion", criterion, "--block-size", "4", *TRAIN, "--max-update", "200",
             "--save-dir", work / name, "--init-from-verifier", verifier, *extra])
        slim(work / name / "checkpoint_best.pt", HERE / f"{name}.pt")
    slim(verifier, HERE / "verifier.pt")
    shutil.rmtree(HERE / "bin", ignore_errors=True)
    (HERE / "bin").mkdir()
    for path in data.iterdir():
        if path.name.startswith(("dict.", "test.")):
            shutil.copy(path, HERE / "bin" / path.name)
    expected = HERE / "expected"
    expected.mkdir(exist_ok=True)
    for name in DECODINGS:
        (expected / f"{name}.txt").write_text("\n".join(generate_lines(HERE, name, work / "gen" / name)) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
