"""SpecDec for a multilingual fairseq verifier (task ``translation_multi_simple_epoch``,
the way M2M-100 and NLLB's dense checkpoints are decoded): a tiny model trained through
fairseq's own multilingual task on generated data with two language pairs (language
tokens on the encoder and the decoder side), a chain drafter trained for it through the
plugin's training path (``fairseq_specdec.training.multilingual_pairs``, then
``specdec_translation``), and ``fairseq-generate`` with the multilingual task's flags plus
the plugin's: SpecDec and lean greedy return fairseq's greedy output."""
import sys
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_cli import generate

from fairseq_specdec.training.multilingual_pairs import check_layout, check_teacher_forcing, rows

from conftest import TINY_MODEL, TRAIN_OPTS, USER_DIR, run

LANGS = ["--lang-pairs", "en-fr,en-es", "--encoder-langtok", "src", "--decoder-langtok"]
# this task's data-loader workers take seconds to shut down (at every checkpoint, after every
# fairseq-generate): load in the main process
NO_WORKERS = ["--num-workers", "0"]


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilingual")
    run([sys.executable, Path(__file__).with_name("multilingual_data.py"), root])  # raw/ and bin/
    run(["fairseq-train", root / "bin", "--user-dir", USER_DIR, "--task", "translation_multi_simple_epoch", *LANGS,
         "--arch", "transformer", *TINY_MODEL, *TRAIN_OPTS, *NO_WORKERS, "--criterion", "label_smoothed_cross_entropy",
         "--label-smoothing", "0.1", "--max-update", "150", "--save-dir", root / "verifier"])
    verifier = root / "verifier" / "checkpoint_last.pt"
    run([sys.executable, "-m", "fairseq_specdec.training.multilingual_pairs", root / "bin", root / "pairs", *LANGS])
    run(["fairseq-train", root / "pairs", "--user-dir", USER_DIR, "--task", "specdec_translation", "-s", "src",
         "-t", "tgt", "--arch", "specdec_drafter_chain_tiny", *TINY_MODEL, "--criterion", "specdec_chain",
         "--kd-weight", "0.5", "--block-size", "5", *TRAIN_OPTS, "--max-update", "40", "--save-dir", root / "drafter",
         "--init-from-verifier", verifier, "--share-verifier-encoder", "--init-decoder-from-verifier"])
    return {"root": root, "bin": root / "bin", "verifier": verifier, "drafter": root / "drafter" / "checkpoint_last.pt"}


def fairseq_generate(multilingual, out: Path, target: str, task: str, *flags):
    """fairseq-generate's own main, in this process; the hypotheses and positional scores by id."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        str(multilingual["bin"]), "--user-dir", USER_DIR, "--task", task, *LANGS, "-s", "en", "-t", target,
        "--path", str(multilingual["verifier"]), "--beam", "1", "--gen-subset", "test", "--batch-size", "10",
        "--results-path", str(out), *NO_WORKERS, *map(str, flags)])
    generate.main(convert_namespace_to_omegaconf(args))
    lines = (out / "generate-test.txt").read_text().splitlines()
    hypotheses = {line.split("\t")[0][2:]: line.split("\t")[2] for line in lines if line.startswith("H-")}
    scores = {line.split("\t")[0][2:]: [float(x) for x in line.split("\t")[1].split()]
              for line in lines if line.startswith("P-")}
    assert hypotheses, "fairseq-generate wrote no hypothesis"
    return hypotheses, scores


@pytest.mark.parametrize("target", ["fr", "es"])
def test_specdec_and_lean_greedy_equal_the_multilingual_greedy(multilingual, target, tmp_path):
    want, want_scores = fairseq_generate(multilingual, tmp_path / "stock", target, "translation_multi_simple_epoch")
    # the language token is the forced first output token, stripped from the text as fairseq strips it
    assert not any(f"__{target}__" in text for text in want.values())
    plugin = "specdec_translation_multi_simple_epoch"
    runs = {"SpecDec": ["--drafter-path", multilingual["drafter"], "--fixed-block"], "lean greedy": ["--lean-greedy"]}
    for name, flags in runs.items():
        got, got_scores = fairseq_generate(multilingual, tmp_path / name.replace(" ", "_"), target, plugin, *flags)
        assert got == want, name
        for sid, scores in want_scores.items():
            # printed with 4 decimals: values 1e-5 apart may print 1e-4 apart
            assert got_scores[sid] == pytest.approx(scores, abs=2e-4), (name, sid)


def test_the_drafter_learned_the_multilingual_layout(multilingual):
    """Drafts after the forced language token are accepted: the drafter read what the
    verifier reads (a drafter trained on another layout drafts the wrong language)."""
    args = options.parse_args_and_arch(options.get_generation_parser(), [
        str(multilingual["bin"]), "--user-dir", USER_DIR, "--task", "specdec_translation_multi_simple_epoch", *LANGS,
        "-s", "en", "-t", "fr", "--drafter-path", str(multilingual["drafter"]), "--fixed-block", "--beam", "1"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("test")
    models, _ = checkpoint_utils.load_model_ensemble([str(multilingual["verifier"])], task=task)
    generator = task.build_generator(models, cfg.generation)
    batches = task.get_batch_iterator(task.dataset("test"), max_sentences=10).next_epoch_itr(shuffle=False)
    for sample in batches:
        task.inference_step(generator, models, sample)
    stats = task.decoding_stats
    assert stats.sentences == len(task.dataset("test"))
    assert stats.accepted_drafts / stats.iterations > 1.0, stats.accepted_drafts / stats.iterations


def test_a_layout_a_bilingual_directory_cannot_hold_is_refused():
    args = options.parse_args_and_arch(options.get_generation_parser(default_task="translation_multi_simple_epoch"),
                                       ["data", "--task", "translation_multi_simple_epoch", *LANGS,
                                        "--lang-tok-replacing-bos-eos"])
    with pytest.raises(ValueError, match="--lang-tok-replacing-bos-eos"):
        check_layout(args)
    args = options.parse_args_and_arch(options.get_generation_parser(default_task="translation_multi_simple_epoch"),
                                       ["data", "--task", "translation_multi_simple_epoch", *LANGS,
                                        "--sampling-method", "temperature"])
    with pytest.raises(ValueError, match="would resample the pairs"):
        check_layout(args)
    eos, pad = 2, 1
    target = torch.tensor([[9, 5, 6, eos]])
    check_teacher_forcing(rows(torch.tensor([[eos, 9, 5, 6]]), pad), rows(target, pad), eos)
    with pytest.raises(ValueError, match="not eos followed by the target"):
        check_teacher_forcing(rows(torch.tensor([[9, 5, 6, 7]]), pad), rows(target, pad), eos)
