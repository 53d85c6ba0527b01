"""Spec-Drafter training with real fairseq-train on the demo slice: the validation loss
falls and block accuracy rises within 150 CPU updates (of two batches each: --update-freq 2),
and the checkpoint decodes on its own through fairseq-generate (drafter-only)."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401
from fairseq import options, tasks  # noqa: E402

from conftest import TINY_MODEL, TRAIN_OPTS, USER_DIR  # noqa: E402

UPDATES = 150
VALIDATE_EVERY = 10
NUM_TEST = 200


def cli(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-5000:]}"
    return proc


def option(opts, name, value):
    """TRAIN_OPTS with one option's value replaced."""
    opts = list(opts)
    opts[opts.index(name) + 1] = value
    return opts


@pytest.fixture(scope="module")
def training(demo_data, tiny_verifier, tmp_path_factory):
    """A drafter (encoder from the verifier, as the recipe does) trained for UPDATES updates of
    two 1024-token batches each, validated every VALIDATE_EVERY updates; returns the
    checkpoint, the parsed validation records and the log."""
    save = tmp_path_factory.mktemp("drafter_uf2")
    proc = cli(["fairseq-train", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--arch", "specdec_drafter_tiny", *TINY_MODEL, "--criterion", "specdec_glancing",
                "--block-size", "5", *option(TRAIN_OPTS, "--max-tokens", "1024"), "--update-freq", "2",
                "--max-update", str(UPDATES), "--validate-interval-updates", str(VALIDATE_EVERY),
                "--init-from-verifier", tiny_verifier, "--save-dir", save])
    log = proc.stdout + proc.stderr
    records = []
    for line in log.splitlines():
        if "valid on 'valid' subset" not in line:
            continue
        fields = dict(re.findall(r"\| (\w+) ([-\d.]+)", line))
        records.append({k: float(v) for k, v in fields.items()})
    return save / "checkpoint_last.pt", records, log


def test_validation_loss_falls_and_block_accuracy_rises(training):
    _, records, log = training
    assert len(records) >= UPDATES // VALIDATE_EVERY, log[-3000:]
    for r in records:
        assert {"loss", "nll_loss", "block_acc", "correct_lead", "num_updates"} <= set(r), r
    by_update = {int(r["num_updates"]): r for r in records}
    assert {VALIDATE_EVERY * i for i in range(1, UPDATES // VALIDATE_EVERY + 1)} <= set(by_update)
    print({u: (r["loss"], r["block_acc"], r["correct_lead"]) for u, r in sorted(by_update.items())})
    # on this slice (seed 1): loss 8.54 -> 7.79, block accuracy 3.9% -> 7.6% (100 valid
    # sentences: the figures are noisy, so the last three validations are averaged)
    first = by_update[VALIDATE_EVERY]
    tail = [by_update[u] for u in sorted(by_update)[-3:]]
    mean = {key: sum(r[key] for r in tail) / 3 for key in ("loss", "block_acc", "correct_lead")}
    assert mean["loss"] < first["loss"] - 0.4, (first, tail)
    assert mean["block_acc"] > first["block_acc"] + 2.0, (first, tail)
    assert mean["correct_lead"] > first["correct_lead"], (first, tail)
    # and the trend is down: the best loss is among the last three validations
    assert min(r["loss"] for r in records) == min(r["loss"] for r in tail)
    # validation runs without glancing: nothing revealed, ratio 0
    assert all(r.get("revealed", 0) == 0 and r.get("glance_ratio", 0) == 0 for r in records)
    # block accuracy is a percentage of the valid block tokens
    assert all(0 <= r["block_acc"] <= 100 for r in records)


def test_update_freq_two_counts_updates_not_batches(demo_data, training):
    checkpoint, records, log = training
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == UPDATES
    assert "done training" in log
    # an epoch of B batches of 1024 tokens is ceil(B / 2) updates
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(demo_data["bin"]), "--task", "translation", "--arch", "transformer"])
    task = tasks.setup_task(args)
    task.load_dataset("train")
    batches = len(task.get_batch_iterator(
        dataset=task.dataset("train"), max_tokens=1024, max_positions=(1024, 1024), ignore_invalid_inputs=True,
        required_batch_size_multiple=8, seed=1, disable_iterator_cache=True).next_epoch_itr(shuffle=True))
    epoch1 = next(line for line in log.splitlines() if "| train | epoch 001 |" in line)
    assert int(re.search(r"num_updates (\d+)", epoch1).group(1)) == math.ceil(batches / 2)
    # the train lines report glancing: a ratio annealing from 0.5 towards 0.3, tokens revealed
    train = [dict(re.findall(r"\| (\w+) ([-\d.]+)", line)) for line in log.splitlines()
             if "train_inner" in line or "| train |" in line]
    ratios = [float(t["glance_ratio"]) for t in train if "glance_ratio" in t]
    assert ratios and all(0.3 - 1e-3 <= r <= 0.5 + 1e-3 for r in ratios)
    assert ratios[-1] < ratios[0]
    assert any(float(t.get("revealed", 0)) > 0 for t in train)


def test_drafter_only_decoding_round_trip(demo_data, training):
    checkpoint, _, _ = training
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--path", checkpoint, "--beam", "1", "--batch-size", "32",
                "--gen-subset", "test"])
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            head, score, *tokens = line.split("\t")
            hyps[int(head[2:])] = (float(score), tokens[0] if tokens else "")
    assert sorted(hyps) == list(range(NUM_TEST))
    assert sum(1 for _, toks in hyps.values() if toks.strip()) > 0.9 * NUM_TEST
    assert all(score <= 0 for score, _ in hyps.values())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_data_parallel_training_on_cpu(demo_data, tmp_path):
    """fairseq's own data-parallel training (two processes over torch.distributed, gloo on
    CPU) trains the drafter: both ranks join, gradients are reduced over both ranks' batches
    (the logged batch size is the sum of the two), and rank 0 saves the checkpoint."""
    def train(save, world_size, port):
        common = ["fairseq-train", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                  "--arch", "specdec_drafter_tiny", *TINY_MODEL, "--criterion", "specdec_glancing",
                  "--block-size", "5", *option(TRAIN_OPTS, "--max-tokens", "512"), "--max-update", "3",
                  "--log-interval", "1", "--disable-validation", "--cpu",
                  "--save-dir", save]
        if world_size == 1:
            proc = cli(common)
            return [proc.stdout + proc.stderr]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        procs = [subprocess.Popen(
            [str(c) for c in common] + [
                "--distributed-world-size", "2", "--distributed-rank", str(rank), "--distributed-no-spawn",
                "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-backend", "gloo",
                "--ddp-backend", "legacy_ddp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for rank in range(2)]
        logs = [p.communicate(timeout=300)[0] for p in procs]
        for rank, (p, log) in enumerate(zip(procs, logs)):
            assert p.returncode == 0, f"rank {rank} failed:\n{log[-5000:]}"
        return logs

    def batch_sizes(log):
        return [float(re.search(r"bsz=([\d.]+)", line).group(1))
                for line in log.splitlines() if "| train_inner |" in line]

    single = train(tmp_path / "single", 1, None)[0]
    logs = train(tmp_path / "ddp", 2, free_port())
    assert "initialized host" in logs[0] and "as rank 1" in logs[1]
    state = torch.load(tmp_path / "ddp" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 3
    # same --max-tokens per process: each update of the pair sees about twice the sentences
    ddp_bsz, single_bsz = batch_sizes(logs[0]), batch_sizes(single)
    assert len(ddp_bsz) == len(single_bsz) == 3
    ratio = sum(ddp_bsz) / sum(single_bsz)
    assert 1.5 < ratio < 2.5, (ddp_bsz, single_bsz)


def test_share_verifier_encoder_keeps_it_through_training(shared_encoder_drafter, tiny_verifier):
    """fairseq-train with --share-verifier-encoder updates the decoder and leaves the encoder
    (and the shared embeddings) exactly the verifier's, so SpecDec can reuse its output."""
    drafter = torch.load(shared_encoder_drafter, map_location="cpu", weights_only=False)
    verifier = torch.load(tiny_verifier, map_location="cpu", weights_only=False)["model"]
    assert drafter["optimizer_history"][-1]["num_updates"] == 100
    own = drafter["model"]
    encoder = [n for n in verifier if n.startswith("encoder.")]
    assert encoder and all(torch.equal(own[n], verifier[n]) for n in encoder)
    assert torch.equal(own["decoder.embed_tokens.weight"], verifier["decoder.embed_tokens.weight"])
