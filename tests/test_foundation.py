"""The foundation: the plugin registers with stock fairseq, its dependencies are picked
by environment marker, and fairseq reloads its own checkpoints under torch >= 2.6."""
import copy
import ast
import subprocess
import sys

import pytest
import torch
from packaging.markers import Marker
from packaging.requirements import Requirement

from conftest import REPO, TINY_MODEL, TRAIN_OPTS, USER_DIR, run

TORCH_WEIGHTS_ONLY_DEFAULT = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 6)


def requirements():
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "INSTALL_REQUIRES":
            return [Requirement(r) for r in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no INSTALL_REQUIRES")


@pytest.mark.parametrize("python, expected", [("3.10", "fairseq==0.12.2"), ("3.11", "fairseq-fixed==0.12.3.1"),
                                              ("3.12", "fairseq-fixed==0.12.3.1")])
def test_fairseq_dependency_is_chosen_by_python_version(python, expected):
    env = {"python_version": python, "python_full_version": python + ".0"}
    chosen = [f"{r.name}{r.specifier}" for r in requirements()
              if r.name.startswith("fairseq") and Marker(str(r.marker)).evaluate(env)]
    assert chosen == [expected]


def test_torch_requirement_never_pins_a_cuda_build():
    torch_req = next(r for r in requirements() if r.name == "torch")
    assert "+cu" not in str(torch_req.specifier)
    assert torch.__version__.split("+")[0] in torch_req.specifier  # the installed CPU build satisfies it


CHECK_REGISTRY = """
import argparse, sys
from fairseq import utils
utils.import_user_module(argparse.Namespace(user_dir=sys.argv[1]))
from fairseq.tasks import TASK_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.criterions import CRITERION_REGISTRY
assert "specdec_translation" in TASK_REGISTRY
for arch in ("specdec_drafter_base", "specdec_drafter_6e6d", "specdec_drafter_tiny"):
    assert arch in ARCH_MODEL_REGISTRY, arch
assert "specdec_glancing" in CRITERION_REGISTRY
print("registered")
"""


@pytest.mark.parametrize("user_dir, cwd", [("fairseq_specdec", REPO), (USER_DIR, "/")])
def test_user_dir_registers_every_component(user_dir, cwd):
    proc = run([sys.executable, "-c", CHECK_REGISTRY, user_dir], cwd=cwd)
    assert "registered" in proc.stdout


def test_generate_reloads_checkpoint_with_plugin(demo_data, tiny_verifier):
    proc = run(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--path", tiny_verifier,
                "--beam", "2", "--batch-size", "50", "--remove-bpe"])
    hyps = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hyps) == 200
    assert "BLEU4" in proc.stdout


@pytest.mark.skipif(not TORCH_WEIGHTS_ONLY_DEFAULT, reason="torch < 2.6 loads checkpoints without an allow-list")
def test_stock_fairseq_fails_without_plugin(demo_data, tiny_verifier):
    """The problem the allow-list solves is real: the same command without the plugin fails."""
    proc = subprocess.run(["fairseq-generate", str(demo_data["bin"]), "--path", str(tiny_verifier), "--beam", "1"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "argparse.Namespace" in proc.stderr


def test_train_restores_from_checkpoint(demo_data, tiny_verifier, tmp_path):
    save = tmp_path / "resume"
    save.mkdir()
    proc = run(["fairseq-train", demo_data["bin"], "--user-dir", USER_DIR, "--arch", "transformer", *TINY_MODEL,
                *TRAIN_OPTS, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                "--max-update", "305", "--restore-file", tiny_verifier, "--save-dir", save])
    assert "num_updates 305" in proc.stderr + proc.stdout
    assert (save / "checkpoint_last.pt").exists()


def test_interactive_speculative_equals_stock_greedy(demo_data, tiny_verifier, tiny_drafter):
    lines = (demo_data["root"] / "prep" / "bpe" / "test.en").read_text().splitlines()[:20]
    text = "\n".join(lines[:5] + [""] + lines[5:]) + "\n"  # an empty line too
    common = [demo_data["bin"], "--user-dir", USER_DIR, "--path", tiny_verifier, "--beam", "1",
              "--source-lang", "en", "--target-lang", "de", "--buffer-size", "4", "--batch-size", "4"]
    stock = run(["fairseq-interactive", *common], input=text)
    spec = run(["fairseq-interactive", *common, "--task", "specdec_translation", "--drafter-path", tiny_drafter],
               input=text)

    def hyps(out):
        return [line.split("\t")[2] for line in out.splitlines() if line.startswith("H-")]

    assert len(hyps(stock.stdout)) == len(lines) + 1
    assert hyps(spec.stdout) == hyps(stock.stdout)
    assert "tokens per iteration" in spec.stderr  # the statistics are logged at the end


def test_hub_interface_decodes_speculatively(demo_data, tiny_verifier, tiny_drafter):
    import fairseq_specdec.hub
    from fairseq.models.transformer import TransformerModel

    sentences = (demo_data["root"] / "prep" / "bpe" / "test.en").read_text().splitlines()[:8]
    stock = TransformerModel.from_pretrained(str(tiny_verifier.parent), tiny_verifier.name, str(demo_data["bin"]))
    spec = fairseq_specdec.hub.from_pretrained(str(tiny_verifier.parent), tiny_verifier.name, str(demo_data["bin"]),
                                               drafter_path=str(tiny_drafter), beta=1)
    assert type(spec.task).__name__ == "SpecDecTranslationTask"
    assert spec.translate(sentences, beam=1) == stock.translate(sentences, beam=1)
    assert spec.task.decoding_stats.sentences == len(sentences)
    # no block_size given: the drafter's k
    generation = copy.deepcopy(spec.cfg.generation)
    generation.beam = 1  # as translate(beam=1) sets it
    assert spec.task.build_generator(spec.models, generation).plan.block_size == 5
