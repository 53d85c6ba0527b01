"""Misuse fails early and clearly: wrong or unreadable drafter checkpoints, bad
acceptance options, drafters too short for the decoding length, unsupported generation
options, bad --init-from-verifier; and fairseq-interactive with the plugin treats empty
and over-long input lines exactly as stock fairseq-interactive does."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fairseq_specdec  # noqa: E402,F401
from fairseq import checkpoint_utils, options, tasks  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

from conftest import TINY_MODEL, USER_DIR, train_drafter  # noqa: E402
from fairseq_specdec.drafting.loading import DrafterCheckpointError, check_dictionaries  # noqa: E402
from fairseq_specdec.models.specdec_drafter import VerifierInitError  # noqa: E402

K = 5



def cli(cmd, stdin=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, input=stdin)


def setup_generation(demo_data, verifier, extra=()):
    """fairseq-generate's steps up to (not including) build_generator."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        str(demo_data["bin"]), "--user-dir", USER_DIR, "--task", "specdec_translation",
        "--path", str(verifier), "--beam", "1", "--block-size", str(K), *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, saved_cfg = checkpoint_utils.load_model_ensemble([str(verifier)], task=task)
    for model in models:
        model.eval()
    return cfg, task, models, saved_cfg


def build_generator(demo_data, verifier, extra=()):
    cfg, task, models, _ = setup_generation(demo_data, verifier, extra)
    return task.build_generator(models, cfg.generation)


def first_batch(task, saved_cfg, batch_size=4):
    task.load_dataset("test", task_cfg=saved_cfg.task)
    itr = task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=batch_size,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    return next(iter(itr))


# ---------------------------------------------------------------- drafter checkpoints

@pytest.fixture(scope="module")
def other_dict_drafter(demo_data, tmp_path_factory):
    """A drafter trained (1 update) on the same text binarized with another, smaller
    dictionary: what re-running fairseq-preprocess without --srcdict/--tgtdict gives."""
    root = tmp_path_factory.mktemp("otherdict")
    bpe = demo_data["root"] / "prep" / "bpe"
    proc = cli(["fairseq-preprocess", "--source-lang", "en", "--target-lang", "de",
                "--trainpref", bpe / "train", "--validpref", bpe / "valid", "--joined-dictionary",
                "--nwordssrc", "300", "--destdir", root / "bin", "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    size = len(Dictionary.load(str(root / "bin" / "dict.de.txt")))
    return train_drafter(root / "bin", root / "drafter", 1), size


def test_drafter_with_another_dictionary_is_refused_by_the_cli(demo_data, tiny_verifier, other_dict_drafter):
    drafter, drafter_size = other_dict_drafter
    verifier_size = len(Dictionary.load(str(demo_data["bin"] / "dict.de.txt")))
    assert drafter_size != verifier_size
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--path", tiny_verifier, "--drafter-path", drafter, "--beam", "1", "--batch-size", "16"])
    assert proc.returncode != 0
    assert "H-" not in proc.stdout  # nothing was decoded
    last = proc.stderr.strip().splitlines()[-1]
    assert "DrafterCheckpointError" in last and "dictionaries differ" in last
    assert f"has {drafter_size} target symbols" in last and f"task has {verifier_size}" in last
    assert str(drafter) in last


def test_same_size_dictionary_with_other_symbols_is_refused(demo_data, tiny_verifier, tiny_drafter, tmp_path):
    _, task, _, _ = setup_generation(demo_data, tiny_verifier)
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_drafter))
    check_dictionaries(state, task, str(tiny_drafter))  # the drafter's own data: accepted
    # a drafter trained (like the fixtures, without --source-lang/--target-lang) on a data folder
    # whose dictionary has the verifier's size but two symbols swapped
    assert state["cfg"]["task"].get("target_lang") is None
    folder = tmp_path / "bin"
    shutil.copytree(demo_data["bin"], folder)
    lines = (folder / "dict.de.txt").read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (folder / "dict.de.txt").write_text("\n".join(lines) + "\n")
    state["cfg"]["task"]["data"] = str(folder)
    with pytest.raises(DrafterCheckpointError, match="dictionaries differ") as err:
        check_dictionaries(state, task, str(tiny_drafter))
    n = len(task.target_dictionary)
    assert f"has {n} target symbols" in str(err.value) and f"task has {n}" in str(err.value)


def test_missing_drafter_file(demo_data, tiny_verifier, tmp_path):
    missing = tmp_path / "nope" / "checkpoint_best.pt"
    with pytest.raises(DrafterCheckpointError, match="no such file") as err:
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(missing)])
    assert str(missing) in str(err.value)


def test_unreadable_drafter_file(demo_data, tiny_verifier, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(DrafterCheckpointError, match="cannot read the checkpoint") as err:
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(garbage)])
    assert str(garbage) in str(err.value)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(Path(tiny_verifier).read_bytes()[:5000])
    with pytest.raises(DrafterCheckpointError, match="cannot read the checkpoint"):
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(truncated)])


def test_verifier_checkpoint_given_as_drafter(demo_data, tiny_verifier):
    with pytest.raises(DrafterCheckpointError, match="not a Spec-Drafter") as err:
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(tiny_verifier)])
    assert "'transformer'" in str(err.value)


# ---------------------------------------------------------------- options

def test_beta_below_one(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--beta must be >= 1"):
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter), "--beta", "0"])


def test_negative_tau(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--tau must be >= 0"):
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter), "--beta", "2",
                                                   "--tau", "-0.5"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_graphs_on_the_cpu(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--cuda-graphs records CUDA graphs, but the verifier is on cpu"):
        build_generator(demo_data, tiny_verifier, ["--lean-greedy", "--cuda-graphs"])


def test_cuda_graphs_need_the_plugins_decoding(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--cuda-graphs runs the plugin's own decoding: add --lean-greedy"):
        build_generator(demo_data, tiny_verifier, ["--cuda-graphs"])
    with pytest.raises(ValueError, match="--cuda-graphs is not available for drafter-only decoding"):
        build_generator(demo_data, tiny_drafter, ["--cuda-graphs"])


def test_block_size_below_one(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--block-size must be >= 1, got 0"):
        setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter), "--block-size", "0"])


def test_nbest_above_one(demo_data, tiny_verifier, tiny_drafter):
    with pytest.raises(ValueError, match="--nbest 2"):
        build_generator(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter), "--nbest", "2"])
    # drafter-only decoding refuses it too
    with pytest.raises(ValueError, match="--nbest 2"):
        build_generator(demo_data, tiny_drafter, ["--nbest", "2"])


def test_nbest_above_one_cli(demo_data, tiny_verifier, tiny_drafter):
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--path", tiny_verifier, "--drafter-path", tiny_drafter, "--beam", "1", "--nbest", "2"])
    assert proc.returncode != 0 and "H-" not in proc.stdout
    assert "--nbest 2" in proc.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- drafter positions

SHORT_POSITIONS = 128  # the demo's targets fit (<= 63 tokens + 5 queries); 200 + 1 + 5 do not


@pytest.fixture(scope="module")
def short_drafter(demo_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    return train_drafter(demo_data["bin"], root / "drafter", 1, [
        "--max-target-positions", str(SHORT_POSITIONS), "--decoder-learned-pos"])


def test_drafter_positions_too_short(demo_data, tiny_verifier, short_drafter):
    cfg, task, models, saved_cfg = setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(short_drafter)])
    generator = task.build_generator(models, cfg.generation)
    assert generator.drafter.max_positions() == SHORT_POSITIONS
    sample = first_batch(task, saved_cfg)
    with pytest.raises(ValueError) as err:
        generator.generate(models, sample)
    message = str(err.value)
    assert f"holds {SHORT_POSITIONS} positions" in message and "needs 206" in message  # 200 + BOS + 5
    assert "--max-target-positions" in message
    assert task.decoding_stats.iterations == 0  # raised before any decoding
    # the advice works: a shorter maximum length fits the drafter
    cfg, task, models, saved_cfg = setup_generation(demo_data, tiny_verifier, [
        "--drafter-path", str(short_drafter), "--max-len-b", "100"])
    hypos = task.build_generator(models, cfg.generation).generate(models, first_batch(task, saved_cfg))
    assert len(hypos) == 4 and all(h[0]["tokens"][-1] == task.target_dictionary.eos() for h in hypos)


def test_drafter_trained_with_32_learned_positions(demo_data, tiny_verifier, tmp_path):
    """A drafter with 32 learned positions trains (targets leave room for k) and is refused at decoding time."""
    # training filters targets so that prefix + k queries fit the 32 positions
    drafter = train_drafter(demo_data["bin"], tmp_path / "d32", 2, [
        "--max-target-positions", "32", "--decoder-learned-pos", "--skip-invalid-size-inputs-valid-test"])
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--path", tiny_verifier, "--drafter-path", drafter, "--beam", "1", "--batch-size", "32"])
    assert proc.returncode != 0 and "H-" not in proc.stdout
    assert "holds 32 positions" in proc.stderr


# ---------------------------------------------------------------- --init-from-verifier

def build_drafter_model(demo_data, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(demo_data["bin"]), "--user-dir", USER_DIR, "--task", "specdec_translation",
        "--arch", "specdec_drafter_tiny", "--criterion", "specdec_glancing", "--block-size", str(K), *extra])
    task = tasks.setup_task(args)
    return task.build_model(args)


def test_init_from_verifier_missing_path(demo_data, tmp_path):
    missing = tmp_path / "verifier.pt"
    with pytest.raises(VerifierInitError, match="no checkpoint at") as err:
        build_drafter_model(demo_data, [*TINY_MODEL, "--init-from-verifier", str(missing)])
    assert str(missing) in str(err.value)


def test_init_from_verifier_of_another_width(demo_data, tiny_verifier):
    narrow = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32",
              "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
              "--share-all-embeddings"]
    with pytest.raises(VerifierInitError) as err:
        build_drafter_model(demo_data, [*narrow, "--init-from-verifier", str(tiny_verifier)])
    message = str(err.value)
    assert "parameter encoder." in message or "parameter decoder.embed_tokens" in message
    assert "(648, 64)" in message or ", 64)" in message  # the verifier's width
    assert ", 32)" in message  # the drafter's


def test_init_from_verifier_copies_the_encoder(demo_data, tiny_verifier):
    model = build_drafter_model(demo_data, [*TINY_MODEL, "--init-from-verifier", str(tiny_verifier)])
    verifier = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_verifier))["model"]
    own = model.state_dict()
    names = [n for n in verifier if n.startswith("encoder.layers.")]
    assert names and all(torch.equal(own[n], verifier[n]) for n in names)


def test_init_decoder_from_verifier_copies_the_top_decoder_layers(demo_data, tiny_verifier):
    one_layer = [*TINY_MODEL, "--decoder-layers", "1"]  # the verifier has 2: its layer 1 becomes layer 0
    model = build_drafter_model(demo_data, [*one_layer, "--init-from-verifier", str(tiny_verifier),
                                            "--init-decoder-from-verifier"])
    verifier = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_verifier))["model"]
    own = model.state_dict()
    top = {n.replace("decoder.layers.1.", "decoder.layers.0."): t for n, t in verifier.items()
           if n.startswith("decoder.layers.1.")}
    assert top and all(torch.equal(own[n], t) for n, t in top.items())
    plain = build_drafter_model(demo_data, [*one_layer, "--init-from-verifier", str(tiny_verifier)])
    assert not torch.equal(plain.state_dict()["decoder.layers.0.fc1.weight"], top["decoder.layers.0.fc1.weight"])


# ---------------------------------------------------------------- fairseq-interactive

def interactive(demo_data, verifier, extra, text):
    proc = cli(["fairseq-interactive", demo_data["bin"], "--user-dir", USER_DIR, "--path", verifier,
                "--beam", "1", "--source-lang", "en", "--target-lang", "de", *extra], stdin=text)
    lines = {}
    for line in proc.stdout.splitlines():
        if line[:2] in ("S-", "H-", "D-", "P-"):
            kind, rest = line.split("\t", 1)
            lines[kind] = rest.split("\t")
    return proc, lines


def assert_same_interactive(got, want):
    assert sorted(got) == sorted(want)
    for key, fields in want.items():
        if key.startswith("S-"):
            assert got[key] == fields
        elif key.startswith(("H-", "D-")):  # score, tokens
            assert got[key][1] == fields[1]
            assert abs(float(got[key][0]) - float(fields[0])) < 1e-4
        else:  # positional scores
            a, b = [list(map(float, f[0].split())) for f in (got[key], fields)]
            assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-3


@pytest.fixture(scope="module")
def interactive_input(demo_data):
    bpe = (demo_data["root"] / "prep" / "bpe" / "test.en").read_text().splitlines()
    words = " ".join(bpe).split()
    too_long = " ".join(words[i % len(words)] for i in range(1100))  # > 1024 source positions
    return bpe[:3] + [""] + bpe[3:5], too_long


@pytest.mark.parametrize("skip", [True, False])
def test_interactive_empty_and_overlong_lines_like_stock(demo_data, tiny_verifier, tiny_drafter, interactive_input,
                                                         skip):
    normal, too_long = interactive_input
    text = "\n".join(normal + [too_long, "the last line ."]) + "\n"
    extra = ["--skip-invalid-size-inputs-valid-test"] if skip else []
    stock, want = interactive(demo_data, tiny_verifier, extra, text)
    spec, got = interactive(demo_data, tiny_verifier, [*extra, "--task", "specdec_translation",
                                                       "--drafter-path", tiny_drafter, "--block-size", str(K)], text)
    assert spec.returncode == stock.returncode == (0 if skip else 1)
    assert want["S-3"] == [""]  # the empty line was translated...
    assert len(want["H-3"][1].split()) >= 1  # ...into something, by both
    assert_same_interactive(got, want)
    if skip:
        # the over-long line (input 6) is skipped, the one after it translated
        assert "H-6" not in want and "H-7" in want
    else:
        # both stop at the over-long line with fairseq's own message
        assert "H-6" not in want and "H-7" not in want
        msg = "Size of sample #0 is invalid"
        assert msg in stock.stderr and msg in spec.stderr
        errors = [[line for line in p.stderr.splitlines() if line.startswith("Exception:")] for p in (stock, spec)]
        assert errors[0] == errors[1] and len(errors[0]) == 1


def test_share_verifier_encoder_needs_the_verifier(demo_data):
    with pytest.raises(ValueError, match="--share-verifier-encoder .*--init-from-verifier PATH"):
        build_drafter_model(demo_data, [*TINY_MODEL, "--share-verifier-encoder"])


def test_share_verifier_encoder_needs_the_verifiers_depth(demo_data, tiny_verifier):
    deeper = [*TINY_MODEL, "--encoder-layers", "3"]  # the verifier has 2
    with pytest.raises(VerifierInitError, match="encoder must be the verifier's.*encoder.layers.2"):
        build_drafter_model(demo_data, [*deeper, "--init-from-verifier", str(tiny_verifier),
                                        "--share-verifier-encoder"])


def test_share_verifier_encoder_freezes_only_the_encoder(demo_data, tiny_verifier):
    model = build_drafter_model(demo_data, [*TINY_MODEL, "--init-from-verifier", str(tiny_verifier),
                                            "--share-verifier-encoder"])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("encoder.") for n in frozen)
    assert model.encoder.embed_tokens is model.decoder.embed_tokens  # --share-all-embeddings: frozen too
    assert model.decoder.mask_embedding.requires_grad and model.decoder.layers[0].fc1.weight.requires_grad


# ---------------------------------------------------------------- no silent override

def test_beam_above_one_with_a_drafter_is_refused(demo_data, tiny_verifier, tiny_drafter):
    """fairseq-generate's default --beam 5 is not quietly replaced by greedy decoding."""
    for extra in (["--drafter-path", str(tiny_drafter)], ["--ngram-drafter"]):
        with pytest.raises(ValueError, match=r"--beam 5: SpecDec decodes one hypothesis per sentence.*"
                                             r"Pass --beam 1 for output identical to the verifier's greedy"):
            build_generator(demo_data, tiny_verifier, [*extra, "--beam", "5"])
    with pytest.raises(ValueError, match="--beam 3: drafter-only decoding decodes one hypothesis"):
        build_generator(demo_data, tiny_drafter, ["--beam", "3"])


def test_beam_default_with_a_drafter_is_refused_by_the_cli(demo_data, tiny_verifier, tiny_drafter):
    proc = cli(["fairseq-generate", demo_data["bin"], "--user-dir", USER_DIR, "--task", "specdec_translation",
                "--path", tiny_verifier, "--drafter-path", tiny_drafter, "--max-sentences", "2"])
    assert proc.returncode != 0 and "H-" not in proc.stdout
    assert "--beam 5: SpecDec decodes one hypothesis per sentence" in proc.stderr.strip().splitlines()[-1]


def test_lean_greedy_with_a_beam_is_refused(demo_data, tiny_verifier):
    with pytest.raises(ValueError, match=r"--lean-greedy decodes greedily: use --beam 1 \(got --beam 4\)"):
        build_generator(demo_data, tiny_verifier, ["--lean-greedy", "--beam", "4"])


def test_drafter_as_path_with_another_drafter_is_refused(demo_data, tiny_drafter):
    for extra, flag in ((["--drafter-path", str(tiny_drafter)], "--drafter-path"), (["--ngram-drafter"], "--ngram-drafter")):
        with pytest.raises(ValueError, match=f"--path holds a drafter .*and {flag} asks for another"):
            build_generator(demo_data, tiny_drafter, extra)


@pytest.mark.parametrize("fixture,kind", [("chain_drafter", "chain drafter"), ("feature_drafter", "feature drafter")])
def test_state_drafter_as_path_is_refused_by_its_kind(request, demo_data, fixture, kind):
    with pytest.raises(ValueError, match=f"a {kind} .* cannot decode alone: pass the verifier as --path"):
        build_generator(demo_data, request.getfixturevalue(fixture))


def test_ensembles_are_refused(demo_data, tiny_verifier, tiny_drafter):
    cfg, task, models, _ = setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter)])
    with pytest.raises(ValueError, match="SpecDec verifies with one model; got an ensemble of 2"):
        task.build_generator([models[0], models[0]], cfg.generation)


def test_ngram_drafters_k_is_stated_once(demo_data, tiny_verifier):
    """Drafting alone, the n-gram drafter's k is NGRAM_BLOCK_SIZE, or --block-size."""
    from fairseq_specdec.drafting.block_size import NGRAM_BLOCK_SIZE
    from test_block_size import generation_setup

    _, _, generator, _ = generation_setup(demo_data["bin"], tiny_verifier, ["--ngram-drafter"])
    assert generator.block_size == NGRAM_BLOCK_SIZE
    _, _, generator, _ = generation_setup(demo_data["bin"], tiny_verifier, ["--ngram-drafter", "--block-size", "3"])
    assert generator.block_size == 3


def test_block_size_above_the_feature_drafters_maximum_is_refused_before_decoding(demo_data, tiny_verifier,
                                                                                 feature_drafter):
    cfg, task, models, _ = setup_generation(demo_data, tiny_verifier, ["--drafter-path", str(feature_drafter)])
    task.cfg.block_size = 40  # as --block-size 40 sets it
    with pytest.raises(ValueError, match="--block-size 40 exceeds this feature drafter's --max-block-size 32"):
        task.build_generator(models, cfg.generation)


# ---------------------------------------------------------------- the hub checks when it loads

def hub(demo_data, verifier, **kwargs):
    import fairseq_specdec.hub

    return fairseq_specdec.hub.from_pretrained(str(verifier.parent), verifier.name, str(demo_data["bin"]), **kwargs)


def test_hub_translates_greedily_with_a_drafter_and_refuses_a_beam(demo_data, tiny_verifier, tiny_drafter):
    from fairseq.models.transformer import TransformerModel

    sentences = (demo_data["root"] / "prep" / "bpe" / "test.en").read_text().splitlines()[:6]
    stock = TransformerModel.from_pretrained(str(tiny_verifier.parent), tiny_verifier.name, str(demo_data["bin"]))
    spec = hub(demo_data, tiny_verifier, drafter_path=str(tiny_drafter))
    assert spec.translate(sentences) == stock.translate(sentences, beam=1)  # the default: beam 1
    with pytest.raises(ValueError, match="--beam 5: SpecDec decodes one hypothesis per sentence"):
        spec.translate(sentences, beam=5)
    plain = hub(demo_data, tiny_verifier)  # no drafter: fairseq's default beam
    assert plain.translate(sentences) == stock.translate(sentences)


def test_hub_checks_the_drafter_and_options_when_it_loads(demo_data, tiny_verifier, tiny_drafter, tmp_path):
    with pytest.raises(DrafterCheckpointError, match="no such file"):
        hub(demo_data, tiny_verifier, drafter_path=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="--beta must be >= 1"):
        hub(demo_data, tiny_verifier, drafter_path=str(tiny_drafter), beta=0)


def test_score_verifier_shows_why_fairseq_failed(demo_data, tmp_path):
    proc = cli(["bash", REPO / "scripts" / "score_verifier.sh", demo_data["bin"], tmp_path / "missing.pt",
                "/dev/null", "de"])
    assert proc.returncode != 0
    assert "missing.pt" in proc.stderr and "fairseq-generate --beam 1 failed" in proc.stderr
    fairseq_lines = proc.stderr.strip().splitlines()[:-1]  # fairseq's own message is shown, not swallowed
    assert any("Error" in line and "missing.pt" in line for line in fairseq_lines), proc.stderr[-2000:]


@pytest.mark.parametrize("flags,named", [
    (["--match-source-len"], "--match-source-len"),
    (["--lm-path", "lm.pt"], "--lm-path"),
    (["--diverse-beam-groups", "2"], "--diverse-beam-groups"),  # (--sampling is supported: test_speculative_sampling)
])
def test_generation_options_the_plugin_lacks_are_refused_not_ignored(demo_data, tiny_verifier, flags, named):
    """SequenceGenerator options the plugin's generators do not implement fail when the
    generator is built, naming the flag (they used to be dropped on the way silently)."""
    with pytest.raises(ValueError, match=named):
        build_generator(demo_data, tiny_verifier, ["--lean-greedy", "--beam", "1", *flags])
