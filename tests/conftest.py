"""Shared fixtures: a small slice of the demo corpus, prepared by the project's own
script, and tiny verifier and drafter checkpoints trained on it with fairseq-train.
Built once per test session (about a minute on 2 CPU cores)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_specdec")

TINY_MODEL = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]
TRAIN_OPTS = [
    "--optimizer", "adam", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50",
    "--max-tokens", "2048", "--no-progress-bar", "--log-interval", "20", "--seed", "1",
    "--no-epoch-checkpoints", "--dropout", "0.1",
]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process decoding on one thread: steadier when another job shares the cores,
    and enough for the tiny models."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run(cmd, **kwargs):
    """Run a command; on failure show its output."""
    # one thread: the tiny models gain nothing from more, and parallel jobs do not fight
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A prepared slice of the demo corpus: dict with raw, bin and bpe codes paths."""
    root = tmp_path_factory.mktemp("demo")
    raw = root / "raw"
    run([sys.executable, REPO / "data" / "make_demo_corpus.py", "--out-dir", raw,
         "--train", "3000", "--valid", "100", "--test", "200", "--seed", "7"])
    run(["bash", REPO / "scripts" / "prepare_bitext.sh", raw, root / "prep", "en", "de", "600"])
    return {"raw": raw, "bin": root / "prep" / "bin", "codes": root / "prep" / "bpe" / "codes", "root": root}


@pytest.fixture(scope="session")
def tiny_verifier(demo_data):
    """A stock fairseq transformer trained for 300 updates with --task translation."""
    save = demo_data["root"] / "verifier"
    run(["fairseq-train", demo_data["bin"], "--task", "translation", "--arch", "transformer", *TINY_MODEL,
         *TRAIN_OPTS, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
         "--max-update", "300", "--save-dir", save, "--user-dir", USER_DIR])
    return save / "checkpoint_last.pt"


def train_drafter(data_bin, save_dir, updates, extra=()):
    run(["fairseq-train", data_bin, "--user-dir", USER_DIR, "--task", "specdec_translation",
         "--arch", "specdec_drafter_tiny", *TINY_MODEL, "--criterion", "specdec_glancing",
         "--block-size", "5", *TRAIN_OPTS, "--max-update", str(updates), "--save-dir", save_dir, *extra])
    return Path(save_dir) / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def tiny_drafter(demo_data, tiny_verifier):
    """A tiny Spec-Drafter (k=5) trained for 300 updates, encoder started from the verifier."""
    return train_drafter(demo_data["bin"], demo_data["root"] / "drafter", 300,
                         ["--init-from-verifier", tiny_verifier])


@pytest.fixture(scope="session")
def shared_encoder_drafter(demo_data, tiny_verifier):
    """A tiny Spec-Drafter trained for 100 updates on the verifier's frozen encoder."""
    return train_drafter(demo_data["bin"], demo_data["root"] / "drafter_shared", 100,
                         ["--init-from-verifier", tiny_verifier, "--share-verifier-encoder"])


@pytest.fixture(scope="session")
def untrained_drafter(demo_data):
    """A Spec-Drafter checkpoint saved after a single update: its drafts are close to random."""
    return train_drafter(demo_data["bin"], demo_data["root"] / "drafter0", 1)


def train_state_drafter(demo_data, verifier, name, arch, criterion):
    """A tiny drafter that reads the verifier's states (k=5), trained for 60 updates."""
    save = demo_data["root"] / name
    run(["fairseq-train", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
         "--arch", arch, *TINY_MODEL, "--criterion", criterion, "--kd-weight", "0.5",
         "--block-size", "5", *TRAIN_OPTS, "--max-update", "60", "--save-dir", save,
         "--init-from-verifier", verifier, "--share-verifier-encoder", "--init-decoder-from-verifier"])
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def feature_drafter(demo_data, tiny_verifier):
    """A tiny feature drafter (block-wise, reads the verifier's states)."""
    return train_state_drafter(demo_data, tiny_verifier, "drafter_feature", "specdec_drafter_feature_tiny",
                               "specdec_feature")


@pytest.fixture(scope="session")
def chain_drafter(demo_data, tiny_verifier):
    """A tiny chain drafter (EAGLE-style)."""
    return train_state_drafter(demo_data, tiny_verifier, "drafter_chain", "specdec_drafter_chain_tiny",
                               "specdec_chain")
