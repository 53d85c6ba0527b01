"""The decodings ``tests/test_old_checkpoints.py`` replays on the checkpoints in
``tests/old_checkpoints/`` (and that ``build.py`` there recorded when they were saved):
``fairseq-generate``'s own ``main``, in this process, on the stored test split."""
from pathlib import Path
from typing import List

from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_cli import generate

USER_DIR = str(Path(__file__).resolve().parents[1] / "fairseq_specdec")
PLUGIN = ["--task", "specdec_translation"]
DECODINGS = {  # name: flags after the verifier's; each drafter at a fixed k, and chain adaptive
    "greedy": [],
    "lean": [*PLUGIN, "--lean-greedy"],
    "chain": [*PLUGIN, "--drafter-path", "chain.pt", "--fixed-block"],
    "chain_adaptive": [*PLUGIN, "--drafter-path", "chain.pt"],
    "chain_k2": [*PLUGIN, "--drafter-path", "chain.pt", "--fixed-block", "--block-size", "2"],
    "feature": [*PLUGIN, "--drafter-path", "feature.pt", "--fixed-block"],
    "spec": [*PLUGIN, "--drafter-path", "spec.pt", "--fixed-block"],
    "spec_relaxed": [*PLUGIN, "--drafter-path", "spec.pt", "--fixed-block", "--beta", "3", "--tau", "2"],
}
LOSSLESS = ["lean", "chain", "chain_adaptive", "chain_k2", "feature", "spec"]


def generate_lines(root: Path, name: str, out: Path) -> List[str]:
    """The ``H-`` and ``P-`` lines of one decoding, in sentence order."""
    flags = [f if not f.endswith(".pt") else str(root / f) for f in DECODINGS[name]]
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        str(root / "bin"), "--user-dir", USER_DIR, "-s", "en", "-t", "de", "--path", str(root / "verifier.pt"),
        "--beam", "1", "--gen-subset", "test", "--batch-size", "8", "--num-workers", "0", "--results-path", str(out), *flags])
    generate.main(convert_namespace_to_omegaconf(args))
    lines = [line for line in (out / "generate-test.txt").read_text().splitlines() if line[:2] in ("H-", "P-")]
    return sorted(lines, key=lambda line: (int(line.split("\t")[0][2:]), line[0]))
