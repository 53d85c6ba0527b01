"""Data-parallel drafter training keeps the ranks' parameters identical, for every drafter
kind and both of fairseq's DDP backends (two CPU processes over gloo; see ddp_sync.py),
and every trainable parameter of every drafter kind gets a gradient (``pytorch_ddp``
refuses unused parameters)."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ddp_sync import BACKENDS, kinds, setup  # noqa: E402

KINDS = ("spec_drafter", "spec_drafter_shared", "feature", "chain")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(demo_data, tiny_verifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "results.json"
    proc = subprocess.run([sys.executable, REPO / "tests" / "ddp_sync.py", "--data", demo_data["bin"],
                           "--verifier", tiny_verifier, "--out", out, "--port", str(free_port())],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_ranks_hold_identical_parameters_after_training(ddp_results, kind, backend):
    result = ddp_results[f"{kind}/{backend}"]
    assert "error" not in result, result
    assert result["moved"] > 1e-4, f"{kind}/{backend}: training did not move the parameters: {result}"
    assert result["rank_difference"] == 0.0, f"{kind}/{backend}: the ranks diverged: {result}"


def test_a_criterion_bypassing_the_wrapper_leaves_the_ranks_apart(ddp_results):
    """The control: the harness can see the failure the criteria used to have (calling the
    model's encoder and decoder directly: pytorch_ddp then never all-reduces)."""
    result = ddp_results["bypass/pytorch_ddp"]
    assert "error" not in result, result
    assert result["rank_difference"] > 1e-4, result


@pytest.mark.parametrize("kind", KINDS)
def test_every_trainable_parameter_gets_a_gradient(demo_data, tiny_verifier, kind):
    cfg, task, model, criterion = setup(str(demo_data["bin"]), kinds(str(tiny_verifier))[kind])
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=400, seed=1,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    model.train()
    loss, _, _ = criterion(model, task.block_sample(next(iter(itr)), torch.Generator().manual_seed(0), model))
    loss.backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{kind}: parameters the loss never uses: {unused}"
