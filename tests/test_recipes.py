"""Tests for the WMT reproduction recipe (scripts/wmt).

* The same scripts/wmt/run.sh that reproduces the paper runs end to end on a small local
  corpus: the demo corpus (1500 training pairs) is put where the download stage puts the
  WMT data, a tiny config dir (32-wide 1+1-layer models, a few updates, k=5, CPU, no fp16)
  replaces configs/wmt14_en_de, and only the download is skipped. It trains the default
  drafter, the chain drafter, and decodes with --draft-vocab. Every stage's outputs are
  checked, then a second run must skip everything; `--drafter spec-drafter` then trains
  and evaluates the paper's Spec-Drafter next to it, reusing the verifier's decodings.
* --dry-run prints every stage's commands (real configs), for either drafter kind, and
  creates nothing.
* The downloader fetches fake WMT archives (tgz, zip, gz, SGML test sets) from an
  http.server on 127.0.0.1 and from file:// URLs, and lays out RAW/{train,valid,test}.
"""
import functools
import gzip
import http.server
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "scripts" / "wmt" / "run.sh"
DOWNLOAD = REPO / "scripts" / "wmt" / "download_wmt.py"
ALL_BUT_BENCHMARK = "download,prepare,train-verifier,distill,train-drafter,evaluate"

TINY_MODEL = """\
--encoder-layers 1
--decoder-layers 1
--encoder-embed-dim 32
--decoder-embed-dim 32
--encoder-ffn-embed-dim 64
--decoder-ffn-embed-dim 64
--encoder-attention-heads 2
--decoder-attention-heads 2
--share-all-embeddings
"""
# A tiny stand-in for configs/wmt14_en_de: same files, same variables, CPU-sized.
TINY_TRAINING = """\
--optimizer adam
--lr 3e-3
--lr-scheduler inverse_sqrt
--warmup-updates 10
--max-tokens 4096
--max-epoch 2
--keep-last-epochs 2
--seed 1
--log-interval 4
--no-progress-bar
--num-workers 0
"""  # the optimization flags of the tiny drafters

TINY_CONFIG = {
    "recipe.env": """\
# tiny recipe settings for tests/test_recipes.py
: "${BPE_MERGES:=400}"
: "${MAX_LEN:=250}"
: "${MAX_RATIO:=1.5}"
: "${VERIFIER_TOKENS_PER_UPDATE:=}"
: "${CHAIN_DRAFTER_TOKENS_PER_UPDATE:=}"
: "${SPEC_DRAFTER_TOKENS_PER_UPDATE:=}"
: "${VERIFIER_AVERAGE:=update 3}"
: "${CHAIN_DRAFTER_AVERAGE:=epoch 2}"
: "${SPEC_DRAFTER_AVERAGE:=epoch 2}"
: "${DISTILL_BEAM:=2}"
: "${DISTILL_SHARDS:=1}"
: "${DISTILL_MAX_TOKENS:=8000}"
: "${DISTILL_GEN_FLAGS:=--max-len-a 1.2 --max-len-b 5}"
: "${RELAXED_BETA:=3}"
: "${RELAXED_TAU:=1.0}"
: "${CHAIN_DRAFT_VOCAB:=200}"
: "${BENCH_BATCH_SIZES:=1,4}"
: "${BENCH_MAX_SENTENCES:=12}"
: "${BENCH_FLAGS:=--repeats 1 --warmup 0 --threads 1 --no-plots --max-len-a 1.2 --max-len-b 5}"
""",
    "verifier.args": "# tiny verifier: stock fairseq transformer\n--task translation\n--arch transformer\n" + TINY_MODEL + """\
--optimizer adam
--lr 3e-3
--lr-scheduler inverse_sqrt
--warmup-updates 10
--criterion label_smoothed_cross_entropy
--label-smoothing 0.1
--max-tokens 1024
--max-update 12
--save-interval-updates 4
--keep-interval-updates 3
--no-epoch-checkpoints
--seed 1
--log-interval 4
--no-progress-bar
--num-workers 0
""",
    "drafter_chain.args": "# tiny chain drafter, k = 5\n--task specdec_translation\n--arch specdec_drafter_chain_tiny\n"
    + TINY_MODEL + """\
--share-verifier-encoder
--init-decoder-from-verifier
--block-size 5
--criterion specdec_chain
--kd-weight 0.5
""" + TINY_TRAINING,
    "drafter_specdec.args": "# tiny Spec-Drafter, k = 5\n--task specdec_translation\n--arch specdec_drafter_tiny\n"
    + TINY_MODEL + """\
--block-size 5
--criterion specdec_glancing
""" + TINY_TRAINING,
    "generate.args": "--max-tokens 4000\n--max-len-a 1.2\n--max-len-b 5\n",
}


def recipe_env(**extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WORKERS": "1",
           "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}
    for name in ("RECIPE_CONFIG_DIR", "RECIPE_SKIP_DOWNLOAD", "DRY_RUN", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU, whatever the machine has
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sh(cmd, env, check=True, timeout=900):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}")
    return proc


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


# ------------------------------------------------------------------ the recipe, end to end
@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmt_recipe")
    config = root / "tiny_config"
    config.mkdir()
    for name, text in TINY_CONFIG.items():
        (config / name).write_text(text)
    data, runs = root / "data", root / "runs"
    raw = data / "wmt14_en_de" / "raw"  # where the download stage writes the corpus
    sh([sys.executable, REPO / "data" / "make_demo_corpus.py", "--out-dir", raw,
        "--train", "1500", "--valid", "50", "--test", "60", "--seed", "3"], recipe_env())
    args = ["bash", RUN_SH, "wmt14_en_de", "--data-root", data, "--ckpt-root", runs]
    env = recipe_env(RECIPE_CONFIG_DIR=config, RECIPE_SKIP_DOWNLOAD=1)
    proc = sh([*args, "--stages", ALL_BUT_BENCHMARK], env)
    return {"root": root, "config": config, "data": data, "runs": runs, "raw": raw, "args": args, "env": env,
            "proc": proc, "corpus": data / "wmt14_en_de", "run": runs / "wmt14_en_de"}


def test_recipe_runs_every_stage_on_a_local_corpus(recipe):
    corpus, run, log = recipe["corpus"], recipe["run"], recipe["proc"].stderr
    # prepare: tokenized text, BPE codes, one joined dictionary
    for name in ("tok/test.de", "bpe/codes", "bin/dict.en.txt", "bin/dict.de.txt", "bin/train.en-de.en.bin",
                 "bin/test.en-de.de.idx"):
        assert (corpus / "prep" / name).exists(), name
    assert (corpus / "prep/bin/dict.en.txt").read_text() == (corpus / "prep/bin/dict.de.txt").read_text()
    assert "400 joint BPE merges" in log
    # verifier: stock fairseq transformer, update checkpoints, their average
    verifier = run / "verifier"
    assert sorted(p.name for p in verifier.glob("checkpoint_*_*.pt")) == \
        ["checkpoint_1_12.pt", "checkpoint_1_4.pt", "checkpoint_1_8.pt"]
    assert (verifier / "train.done").exists() and (verifier / "averaged.pt").exists()
    assert "averaging 3 checkpoints" in log
    # distillation: every training sentence translated (none lost to batching), binarized
    distill = corpus / "distill.en-de"
    assert (distill / "bin" / "dict.de.txt").exists() and (distill / "bin" / "train.en-de.de.bin").exists()
    n_train = len((corpus / "prep/bpe/train.en").read_text().splitlines())
    assert len((distill / "text/train.de").read_text().splitlines()) == n_train
    assert "0 sentences without a hypothesis" in recipe["proc"].stdout + log
    # drafter: the chain drafter by default, started from (and taught by) the averaged verifier;
    # epoch checkpoints and their average
    assert f"drafter: --drafter chain, the EAGLE-style chain drafter (--arch specdec_drafter_chain_tiny, k=5), " \
           f"trained from {recipe['config'] / 'drafter_chain.args'} into {run / 'drafter_chain'}, " \
           f"decoded with --draft-vocab 200" in log
    drafter = run / "drafter_chain"
    assert (drafter / "checkpoint1.pt").exists() and (drafter / "checkpoint2.pt").exists()
    assert (drafter / "averaged.pt").exists()
    assert f"--init-from-verifier {verifier / 'averaged.pt'}" in log
    assert "--criterion specdec_chain" in log
    assert not (run / "drafter_specdec").exists()
    # evaluation: the four decodings of the whole test set, scored, in one table; the
    # verifier's in eval/, SpecDec's (chain drafter, 200-token draft vocabulary) in eval/chain/
    evals = run / "eval" / "chain"
    rows = json.loads((evals / "results.json").read_text())
    assert [r["name"] for r in rows] == ["greedy", "beam5", "specdec", "specdec_relaxed"]
    for r in rows:
        assert r["sentences"] == 60
        assert r["compound_split"] is True
        assert 0 <= r["tokenized_bleu"] <= 100 and 0 <= r["sacrebleu"] <= 100
    specdec = {r["name"]: r for r in rows}
    assert specdec["specdec"]["identical_to_greedy"] == 100.0  # lossless: greedy's output exactly
    assert specdec["specdec"]["tokens_per_iteration"] >= 1.0
    table = (evals / "results.md").read_text()
    assert "SpecDec with the EAGLE-style chain drafter (--draft-vocab 200)" in table
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Decoding")]
    assert len(body) == 4
    for label in ("Verifier, greedy", "Verifier, beam 5", "SpecDec (k=5, beta=1)",
                  "SpecDec relaxed (k=5, beta=3, tau=1)"):
        assert label in table
    assert "tok. BLEU (compound split)" in table
    for mode in ("greedy", "beam5"):
        assert (run / "eval" / f"{mode}.txt").exists()
    for mode in ("specdec", "specdec_relaxed"):
        assert (evals / f"{mode}.txt").exists()
        # the task counted the shortlist from the verifier's training data (prep/bin)
        assert re.search(r"--draft-vocab 200: drafting among \d+ tokens, .* train target tokens of "
                         + re.escape(str(corpus / "prep" / "bin")), (evals / f"{mode}.txt.log").read_text())
    assert "--task specdec_translation" in log and "--beta 3 --tau 1.0" in log
    assert log.count("--beam 1 --draft-vocab 200 --beta") == 2
    assert "--required-batch-size-multiple 1" in log
    assert not list(recipe["root"].rglob("*.tmp")), "a temporary file was left behind"


def test_recipe_second_run_skips_every_step(recipe):
    before = {p: p.stat().st_mtime_ns for p in recipe["run"].rglob("*") if p.is_file()}
    proc = sh([*recipe["args"], "--stages", ALL_BUT_BENCHMARK], recipe["env"])
    assert not re.search(r"^\+ ", proc.stderr, re.M), f"a command ran again:\n{proc.stderr}"
    assert proc.stderr.count("done already") >= 10
    after = {p: p.stat().st_mtime_ns for p in recipe["run"].rglob("*") if p.is_file()}
    assert after == before


def test_recipe_spec_drafter_option_trains_the_papers_drafter_next_to_the_chain_one(recipe):
    run = recipe["run"]
    chain_files = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    proc = sh([*recipe["args"], "--drafter", "spec-drafter", "--stages", "train-drafter,evaluate"], recipe["env"])
    log = proc.stderr
    assert f"drafter: --drafter spec-drafter, the paper's Spec-Drafter (--arch specdec_drafter_tiny, k=5), " \
           f"trained from {recipe['config'] / 'drafter_specdec.args'} into {run / 'drafter_specdec'}" in log
    drafter = run / "drafter_specdec"
    assert (drafter / "averaged.pt").exists() and "--criterion specdec_glancing" in log
    assert "--draft-vocab" not in log  # a chain drafter's decoding flag
    rows = {r["name"]: r for r in json.loads((run / "eval" / "specdec" / "results.json").read_text())}
    assert list(rows) == ["greedy", "beam5", "specdec", "specdec_relaxed"]
    assert rows["specdec"]["identical_to_greedy"] == 100.0 and rows["specdec"]["sentences"] == 60
    assert "SpecDec with the paper's Spec-Drafter" in (run / "eval" / "specdec" / "results.md").read_text()
    # the verifier's greedy and beam 5 decodings are shared; nothing of the chain drafter's changed
    assert "decode the test set: verifier greedy: done already" in log
    assert {p: p.stat().st_mtime_ns for p in chain_files} == chain_files


def test_recipe_benchmark_stage(recipe):
    bench = subprocess.run([sys.executable, "-c", "import fairseq_specdec.benchmark"], cwd=REPO,
                           env=recipe_env(PYTHONPATH=REPO), capture_output=True)
    if bench.returncode != 0:
        pytest.skip("fairseq_specdec.benchmark is not importable")
    proc = sh([*recipe["args"], "--stages", "benchmark"], recipe["env"])
    out = recipe["run"] / "benchmark_chain"
    report = json.loads((out / "benchmark.json").read_text())
    assert report  # the benchmark's own tests check its contents
    assert (out / "stdout.md").exists() or (out / "table.md").exists()
    assert "--modes greedy,beam5,specdec,specdec_relaxed --draft-vocab 200" in proc.stderr
    assert f"--drafter {recipe['run'] / 'drafter_chain' / 'averaged.pt'}" in proc.stderr
    assert "--source-lang en --target-lang de" in proc.stderr
    assert "--device cuda" not in proc.stderr  # no GPU visible


# ------------------------------------------------------------------ dry run
@pytest.mark.parametrize("pair,src,tgt,merges,drafter,drafter_freq", [
    ("wmt14_en_de", "en", "de", 32000, None, 2),  # the default: the chain drafter, 64k tokens per update
    ("wmt16_ro_en", "ro", "en", 40000, "chain", 1),  # 32k
    ("wmt14_en_de", "en", "de", 32000, "spec-drafter", 4),  # the paper's Spec-Drafter: 128k
    ("wmt16_ro_en", "ro", "en", 40000, "spec-drafter", 2),  # 64k
])
def test_dry_run_prints_every_command_and_creates_nothing(tmp_path, pair, src, tgt, merges, drafter, drafter_freq):
    data, runs = tmp_path / "data", tmp_path / "runs"
    option = ["--drafter", drafter] if drafter else []
    proc = sh(["bash", RUN_SH, pair, "--dry-run", "--gpus", "8", "--data-root", data, "--ckpt-root", runs, *option],
              recipe_env())
    assert files_under(tmp_path) == [], "a dry run created files"
    out = proc.stderr
    corpus = "wmt14_en_de" if "wmt14" in pair else "wmt16_en_ro"
    # which drafter it trains, from which args file, into which directory
    run = runs / pair
    if drafter == "spec-drafter":
        args, drafter_dir = REPO / "configs" / corpus / "drafter_specdec.args", run / "drafter_specdec"
        assert f"drafter: --drafter spec-drafter, the paper's Spec-Drafter (--arch specdec_drafter_base, k=25), " \
               f"trained from {args} into {drafter_dir} (--drafter chain for the other kind)" in out
        assert "--draft-vocab" not in out
        evals, bench = run / "eval" / "specdec", run / "benchmark_specdec"
    else:
        args, drafter_dir = REPO / "configs" / corpus / "drafter_chain.args", run / "drafter_chain"
        assert f"drafter: --drafter chain, the EAGLE-style chain drafter (--arch specdec_drafter_chain, k=6), " \
               f"trained from {args} into {drafter_dir}, decoded with --draft-vocab 4096 " \
               f"(--drafter spec-drafter for the other kind)" in out
        # the log line, both SpecDec decodings, the results table's title, the benchmark
        assert out.count("--draft-vocab 4096") == 5
        evals, bench = run / "eval" / "chain", run / "benchmark_chain"
    assert f"train_drafter.sh {data}/{corpus}/distill.{src}-{tgt}/bin {drafter_dir} {run}/verifier/averaged.pt " \
           f"{args} --source-lang {src} --target-lang {tgt} --distributed-world-size 8 --update-freq {drafter_freq}" in out
    assert f"--inputs {drafter_dir} --num-update-checkpoints 5" in out
    specdec_lines = [line for line in out.splitlines() if "--drafter-path" in line]
    assert len(specdec_lines) == 2
    for line in specdec_lines:  # a beam above 1 with a drafter is an error: --beam 1, once
        assert line.startswith("+ fairseq-generate ") and re.findall(r"--beam \d+", line) == ["--beam 1"]
        assert f"--drafter-path {drafter_dir}/averaged.pt" in line and f" > {evals}/specdec" in line
    assert f"--out-md {evals}/results.md" in out and f"--row greedy={run}/eval/greedy.txt" in out
    assert f"--drafter {drafter_dir}/averaged.pt" in out and f"--out-dir {bench}.tmp" in out
    assert f"download_wmt.py --pair {corpus}" in out
    assert f"prepare_bitext.sh {data}/{corpus}/raw {data}/{corpus}/prep {corpus[6:8]} {corpus[9:11]} {merges} 250 1.5" in out
    assert f"train_verifier.sh {data}/{corpus}/prep/bin" in out
    assert f"configs/{corpus}/verifier.args --source-lang {src} --target-lang {tgt} " \
           f"--distributed-world-size 8 --update-freq 1" in out  # 8 GPUs x 4096 tokens = 32k
    assert "average_checkpoints.py" in out and "--num-update-checkpoints 5" in out
    assert "BEAM=5" in out and "distill.sh" in out
    assert f"train_drafter.sh {data}/{corpus}/distill.{src}-{tgt}/bin" in out
    assert out.count("+ fairseq-generate ") == 4
    assert "--drafter-path" in out and "--beta 3 --tau 1.0" in out
    assert "--block-size" not in out  # trained from the args file; decoding reads k from the drafter
    assert "score.py" in out and ("--compound-split" in out) == (tgt == "de")
    assert "-m fairseq_specdec.benchmark" in out and "--batch-sizes 1,8,32" in out


def test_recipe_refuses_bad_arguments(tmp_path):
    env = recipe_env()
    for args, message in ((["wmt15_xx_yy"], "unknown PAIR"), (["wmt14_en_de", "--stages", "train"], "unknown stage"),
                          (["wmt14_en_de", "--gpus", "two"], "positive number"),
                          (["wmt14_en_de", "--drafter", "eagle"], "--drafter: chain or spec-drafter, got 'eagle'"),
                          (["wmt14_en_de", "--config-dir", tmp_path], "missing")):
        proc = sh(["bash", RUN_SH, *args, "--dry-run"], env, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
    # a config dir needs the args file of the drafter kind asked for, training that kind
    config = tmp_path / "config"
    config.mkdir()
    for name in ("recipe.env", "verifier.args", "generate.args"):
        (config / name).write_text((REPO / "configs" / "wmt14_en_de" / name).read_text())
    (config / "drafter_chain.args").write_text((REPO / "configs" / "wmt14_en_de" / "drafter_specdec.args").read_text())
    dry = ["bash", RUN_SH, "wmt14_en_de", "--dry-run", "--config-dir", config]
    proc = sh([*dry, "--drafter", "spec-drafter"], env, check=False)
    assert proc.returncode != 0 and f"missing {config}/drafter_specdec.args (--drafter spec-drafter)" in proc.stderr
    proc = sh(dry, env, check=False)
    assert proc.returncode != 0 and f"{config}/drafter_chain.args: --arch 'specdec_drafter_base' is not the " \
        "EAGLE-style chain drafter (--drafter chain wants specdec_drafter_chain*)" in proc.stderr, proc.stderr
    (config / "drafter_chain.args").write_text((REPO / "configs" / "wmt14_en_de" / "drafter_chain.args").read_text())
    (config / "recipe.env").write_text((config / "recipe.env").read_text().replace("CHAIN_DRAFT_VOCAB", "OTHER"))
    proc = sh(dry, env, check=False)
    assert proc.returncode != 0 and f"{config}/recipe.env sets no CHAIN_DRAFT_VOCAB" in proc.stderr, proc.stderr
    # a stage whose input is missing says which stage to run first
    cmd = ["bash", RUN_SH, "wmt14_en_de", "--stages", "train-verifier", "--data-root", tmp_path,
           "--ckpt-root", tmp_path]
    proc = sh(cmd, env, check=False)
    assert proc.returncode != 0 and "not found: run the prepare stage first" in proc.stderr
    # the real configs train in fp16: on a machine without a GPU a real run stops before training
    (tmp_path / "wmt14_en_de" / "prep" / "bin").mkdir(parents=True)
    (tmp_path / "wmt14_en_de" / "prep" / "bin" / "dict.de.txt").write_text("")
    proc = sh(cmd, env, check=False)
    assert proc.returncode != 0 and "asks for --fp16 but no GPU is visible" in proc.stderr
    assert not (tmp_path / "wmt14_en_de" / "verifier").exists()


# ------------------------------------------------------------------ the downloader
def _load_downloader():
    spec = importlib.util.spec_from_file_location("_download_wmt", DOWNLOAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tgz(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _sgm(doc, lines):
    segs = "".join(f'<seg id="{i + 1}">{line}</seg>\n' for i, line in enumerate(lines))
    return f'<srcset setid="{doc}" srclang="any">\n<doc sysid="ref" docid="d1">\n<p>\n{segs}</p>\n</doc>\n</srcset>\n'


def make_fake_wmt14(folder):
    """Tiny archives with the names and member paths of the real WMT14 EN-DE ones."""
    _tgz(folder / "training-parallel-europarl-v7.tgz", {
        "training/europarl-v7.de-en.en": "Resumption of the session\nI declare .\n",
        "training/europarl-v7.de-en.de": "Wiederaufnahme der Sitzung\nIch erkläre .\n",
        "training/europarl-v7.fr-en.en": "decoy\n", "training/europarl-v7.fr-en.fr": "leurre\n"})
    _tgz(folder / "training-parallel-commoncrawl.tgz", {
        "commoncrawl.de-en.en": "crawled line\r with a carriage return\n",
        "commoncrawl.de-en.de": "gecrawlte Zeile\u2028mit Zeilentrenner\n",
        "commoncrawl.de-en.annotation": "x\n"})
    _tgz(folder / "training-parallel-nc-v9.tgz", {
        "training/news-commentary-v9.de-en.en": "news one\nnews two\nnews three\n",
        "training/news-commentary-v9.de-en.de": "Nachricht eins\nNachricht zwei\nNachricht drei\n"})
    _tgz(folder / "wmt14-dev.tgz", {
        "dev/newstest2013.en": "valid one\nvalid two\n", "dev/newstest2013.de": "gültig eins\ngültig zwei\n",
        "dev/newstest2013-src.en.sgm": _sgm("newstest2013", ["not this one"])})
    _tgz(folder / "test-full.tgz", {
        "test-full/newstest2014-deen-src.en.sgm": _sgm("newstest2014", ["Gutach: safety", "A & B"]),
        "test-full/newstest2014-deen-ref.de.sgm": _sgm("newstest2014", ["Gutach: Sicherheit", "A & B"]),
        "test-full/newstest2014-deen-ref.en.sgm": _sgm("newstest2014", ["decoy", "decoy"])})


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        QuietHandler.requests.append(self.path)


@pytest.fixture
def http_mirror(tmp_path):
    folder = tmp_path / "mirror"
    make_fake_wmt14(folder)
    QuietHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_downloader_fetches_extracts_and_lays_out_wmt14_over_http(tmp_path, http_mirror):
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    cmd = [sys.executable, DOWNLOAD, "--pair", "wmt14_en_de", "--raw", raw, "--downloads", downloads,
           "--mirror", http_mirror]
    sh(cmd, recipe_env())
    read = lambda name: (raw / name).read_text(encoding="utf-8").split("\n")[:-1]  # noqa: E731
    assert read("train.en") == ["Resumption of the session", "I declare .", "crawled line  with a carriage return",
                                "news one", "news two", "news three"]
    assert read("train.de") == ["Wiederaufnahme der Sitzung", "Ich erkläre .", "gecrawlte Zeile mit Zeilentrenner",
                                "Nachricht eins", "Nachricht zwei", "Nachricht drei"]
    assert read("valid.en") == ["valid one", "valid two"] and read("valid.de") == ["gültig eins", "gültig zwei"]
    assert read("test.en") == ["Gutach: safety", "A & B"] and read("test.de") == ["Gutach: Sicherheit", "A & B"]
    assert sorted(p.name for p in downloads.glob("*.tgz")) == sorted(
        ["training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz", "training-parallel-nc-v9.tgz",
         "wmt14-dev.tgz", "test-full.tgz"])
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.tmp"))
    assert len(QuietHandler.requests) == 5

    # a second run fetches nothing; with the RAW files gone it rebuilds them from the archives
    sh(cmd, recipe_env())
    for f in raw.iterdir():
        f.unlink()
    sh(cmd, recipe_env())
    assert len(QuietHandler.requests) == 5 and read("test.de") == ["Gutach: Sicherheit", "A & B"]

    # an interrupted download (a .part left behind) is fetched again, whole
    archive = downloads / "test-full.tgz"
    archive.rename(downloads / "test-full.tgz.part")
    with open(downloads / "test-full.tgz.part", "r+b") as f:
        f.truncate(100)
    for f in raw.iterdir():
        f.unlink()
    for f in (downloads / "extracted" / "test-full.tgz").iterdir():
        f.unlink()
    sh(cmd, recipe_env())
    assert len(QuietHandler.requests) == 6 and read("test.en") == ["Gutach: safety", "A & B"]
    assert tarfile.is_tarfile(archive)


def test_downloader_reads_file_urls_zip_and_base_overrides_for_wmt16(tmp_path):
    base = tmp_path / "site"
    wmt16 = base / "statmt_data" / "wmt16" / "translation-task"
    _tgz(wmt16 / "training-parallel-ep-v8.tgz", {
        "training-parallel-ep-v8/europarl-v8.ro-en.en": "parliament\n",
        "training-parallel-ep-v8/europarl-v8.ro-en.ro": "parlament\n"})
    zpath = base / "opus" / "OPUS-SETIMES" / "v2" / "moses" / "en-ro.txt.zip"
    zpath.parent.mkdir(parents=True)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("SETIMES.en-ro.en", "southeast one\nsoutheast two\n")
        zf.writestr("SETIMES.en-ro.ro", "sud-est unu\nsud-est doi\n")
        zf.writestr("README", "decoy\n")
    _tgz(wmt16 / "dev-romanian-updated.tgz", {
        "dev/newsdev2016-enro-src.en.sgm": _sgm("newsdev2016", ["dev en"]),
        "dev/newsdev2016-enro-ref.ro.sgm": _sgm("newsdev2016", ["dev ro"])})
    _tgz(wmt16 / "test.tgz", {
        "test/newstest2016-enro-src.en.sgm": _sgm("newstest2016", ["test en 1", "test en 2"]),
        "test/newstest2016-enro-ref.ro.sgm": _sgm("newstest2016", ["test ro 1", "test ro 2"])})
    raw = tmp_path / "raw"
    sh([sys.executable, DOWNLOAD, "--pair", "wmt16_en_ro", "--raw", raw,
        "--base", f"statmt_data={(base / 'statmt_data').as_uri()}/", "--base", f"opus={(base / 'opus').as_uri()}"],
       recipe_env())
    read = lambda name: (raw / name).read_text(encoding="utf-8").split("\n")[:-1]  # noqa: E731
    assert read("train.en") == ["parliament", "southeast one", "southeast two"]
    assert read("train.ro") == ["parlament", "sud-est unu", "sud-est doi"]
    assert read("valid.ro") == ["dev ro"] and read("test.en") == ["test en 1", "test en 2"]
    assert (tmp_path / "downloads" / "SETIMES2.en-ro.txt.zip").exists()  # default: RAW/../downloads


def test_downloader_dry_run_lists_the_real_urls(tmp_path):
    proc = sh([sys.executable, DOWNLOAD, "--pair", "wmt14_en_de", "--raw", tmp_path / "raw", "--dry-run"],
              recipe_env())
    for url in ("http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
                "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
                "http://statmt.org/wmt14/training-parallel-nc-v9.tgz", "http://statmt.org/wmt14/dev.tgz",
                "http://statmt.org/wmt14/test-full.tgz"):
        assert url in proc.stdout
    assert files_under(tmp_path) == []


def test_downloader_extracts_gz_and_refuses_misaligned_corpora(tmp_path):
    dl = _load_downloader()
    gz = tmp_path / "corpus.bt.en-ro.en.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("one\ntwo\n")
    got = dl.extract(str(gz), {"en": "corpus.bt.en-ro.en"}, str(tmp_path / "x"))
    assert Path(got["en"]).read_text() == "one\ntwo\n"
    (tmp_path / "a.en").write_text("1\n2\n")
    (tmp_path / "a.de").write_text("1\n")
    with pytest.raises(SystemExit, match="different line counts"):
        dl.write_split(str(tmp_path), "train", ("en", "de"),
                       [{"en": str(tmp_path / "a.en"), "de": str(tmp_path / "a.de")}])
    assert not (tmp_path / "train.en").exists()
    with pytest.raises(SystemExit, match="no member matching"):
        dl.extract(str(gz), {"en": "nothing-like-this"}, str(tmp_path / "y"))
