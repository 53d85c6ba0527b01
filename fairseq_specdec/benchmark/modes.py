"""The benchmark's decoding modes: which exist, and one decoder object per mode.

Besides fairseq's greedy and beam search, our own lean greedy (``greedy_lean``: the
verifier's lean forward and preallocated cache, one token per step, greedy's output),
SpecDec (lossless and relaxed) and the CTranslate2 peer (greedy and beam 5 in float32, or
float16 with --fp16, and greedy in int8 and int8_float32 where the device supports them;
timed in a process of its own: ``ct2``), two *bound* modes measure SpecDec's limit on the machine at hand: the
drafter is replaced by an oracle that drafts greedy's own output, so every draft is
accepted. ``specdec_oracle`` still runs the real drafter (and throws its drafts away):
the speed a perfect drafter of the same cost would reach. ``specdec_oracle_free`` drafts
for free: what verification alone costs.

SpecDec's modes draft adaptively (``drafting.policy``: up to k drafts per iteration,
as many as pay, none included), as ``fairseq-generate`` does by default;
``specdec_fixed`` drafts exactly k every iteration (``--fixed-block``, the paper's rule).
Each timed pass starts the policy afresh: what one ``fairseq-generate`` run learns.

Three sampling modes (not in the default set): ``sample_topk`` is fairseq's ``--sampling
--sampling-topk 10`` (how back-translation data is made), ``sample_topk_lean`` the same
through the lean verifier (``--lean-greedy --sampling``: no drafts), ``specdec_sample_topk`` the
same distribution through speculative sampling with the trained drafter (adaptive drafting);
each pass reseeds torch's RNG, and their outputs are not compared with greedy's.

Two lossless modes draft without (only) the trained drafter (``ngram_drafter``):
``specdec_ngram`` with the model-free n-gram drafter alone, ``specdec_combined`` with the
Spec-Drafter and the n-gram drafter together (per row, the more promising proposal).
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from fairseq_specdec.benchmark import ct2 as peer
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.drafting.policy import DraftPolicy
from fairseq_specdec.decoding.generators import build_generator, build_proposer
from fairseq_specdec.decoding.plan import DecodingPlan
from fairseq_specdec.decoding.length_limit import length_limit
from fairseq_specdec.drafting.ngram_data import NGramDataError, build_index
from fairseq_specdec.drafting.ngram_index import NGramIndex
from fairseq_specdec.verification.speculative_sampling import SamplingRule
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats

DRAFTED_MODES = ("specdec", "specdec_fixed", "specdec_relaxed", "specdec_sample_topk")  # the trained drafter's drafts
ORACLE_MODES = ("specdec_oracle", "specdec_oracle_free")
NGRAM_MODES = ("specdec_ngram", "specdec_combined")  # lossless, with the n-gram drafter
SPECDEC_MODES = DRAFTED_MODES + NGRAM_MODES + ORACLE_MODES
CT2_MODES = ("ct2_greedy", "ct2_beam5", "ct2_greedy_int8", "ct2_greedy_int8_float32")  # timed in their own process
# fairseq's --sampling --sampling-topk 10, the lean verifier's, and SpecDec's
SAMPLING_MODES = ("sample_topk", "sample_topk_lean", "specdec_sample_topk")
LEAN_MODES = ("greedy_lean", "sample_topk_lean")  # the lean verifier without drafts
SAMPLE_TOPK, SAMPLE_SEED = 10, 1  # the back-translation recipe's top-k; each pass reseeds torch's RNG
MODES = ("greedy", "greedy_lean", "beam5", "sample_topk", "sample_topk_lean", *SPECDEC_MODES, *CT2_MODES)
DEFAULT_MODES = tuple(m for m in MODES if m not in ORACLE_MODES + NGRAM_MODES + SAMPLING_MODES)
FIXED_BLOCK_MODES = ORACLE_MODES + ("specdec_fixed",)  # exactly k drafts per iteration
NEEDS_DRAFTER = DRAFTED_MODES + ("specdec_combined", "specdec_oracle")
BEAMS = {"greedy": 1, "greedy_lean": 1, "beam5": 5, "sample_topk": 1, "sample_topk_lean": 1, "ct2_greedy": 1,
         "ct2_beam5": 5, "ct2_greedy_int8": 1, "ct2_greedy_int8_float32": 1}

KnownOutputs = Dict[Tuple[int, ...], List[int]]  # unpadded source tokens -> greedy's tokens


class FairseqDecoder:
    """One fairseq generator (stock or speculative) over a list of batches."""

    def __init__(self, generator, model):
        self.generator, self.models = generator, [model]

    def prepare(self, batches):
        return batches

    def run(self, batches):
        self.reset()
        return [self.generator.generate(self.models, sample) for sample in batches]

    def reset(self) -> None:
        """Forget what adaptive drafting learned and reseed torch's RNG (sampling modes): every
        pass starts as a fresh run does."""
        torch.manual_seed(SAMPLE_SEED)
        policy = getattr(self.generator, "policy", None)
        if policy is not None:
            self.generator.policy = DraftPolicy(policy.max_drafts)

    def uncounted(self, batches):
        """``run`` without adding to the generator's statistics (a warm-up pass)."""
        counted = getattr(self.generator, "stats", None)
        if counted is None:
            return self.run(batches)
        self.generator.stats = DecodingStats(profile=False)
        try:
            return self.run(batches)
        finally:
            self.generator.stats = counted

    def tokens(self, raw, batches) -> Dict[int, List[int]]:
        out = {}
        for hypos, sample in zip(raw, batches):
            for i, sid in enumerate(sample["id"].tolist()):
                out[sid] = hypos[i][0]["tokens"].tolist()
        return out


def known_outputs(raw, batches, pad: int) -> KnownOutputs:
    """What the oracle drafts from: each source's output in a ``FairseqDecoder`` run."""
    known = {}
    for hypos, sample in zip(raw, batches):
        for i, row in enumerate(sample["net_input"]["src_tokens"]):
            known[source_key(row, pad)] = hypos[i][0]["tokens"].tolist()
    return known


def load_ngram_index(args, task, src: str, tgt: str) -> Optional[NGramIndex]:
    """The n-gram modes' index over the train targets of --ngram-data (default --data), if one runs."""
    if not any(m in NGRAM_MODES for m in args.modes):
        return None
    data = args.ngram_data or args.data
    try:
        return build_index(data, src, tgt, task.target_dictionary, args.ngram_order, flag="--ngram-data")
    except NGramDataError as err:
        raise ValueError(str(err)) from err


def _proposer(mode: str, model, trained, tgt_dict, ngram_index: Optional[NGramIndex],
              graphs: Optional[GraphOptions], shortlist: Optional[Tensor]):
    """The drafting side of ``mode``: the trained drafter (``trained``, None for the modes
    without one), the n-gram drafter, both, or None (perfect drafts, drafting free)."""
    if mode in NGRAM_MODES and ngram_index is None:
        raise ValueError(f"mode {mode} drafts with the n-gram index: pass it as ngram_index=")
    index = ngram_index if mode in NGRAM_MODES else None
    if trained is None and index is None:
        return None
    return build_proposer(trained, model, tgt_dict, index, graphs, shortlist)


def length_limits(batches, max_len_a: float, max_len_b: int, max_positions: int) -> Dict[int, int]:
    """The most tokens (eos not counted) each sentence may get: fairseq's limit, from the
    batch's padded source length with its eos, capped by the decoder's positions."""
    limits = {}
    for sample in batches:
        src_len = sample["net_input"]["src_tokens"].size(1)
        limit = length_limit(max_len_a, max_len_b, src_len, max_positions)
        limits.update((sid, limit) for sid in sample["id"].tolist())
    return limits


def count_at_limit(tokens: Dict[int, List[int]], limits: Dict[int, int]) -> int:
    """Outputs (token lists ending with eos) that reached their length limit: cut, not ended by the model."""
    return sum(len(toks) - 1 >= limits[sid] for sid, toks in tokens.items())


def make_decoder(mode: str, args, model, drafter, tgt_dict, stats: Optional[DecodingStats], ct2=None,
                 known: Optional[KnownOutputs] = None, ngram_index: Optional[NGramIndex] = None,
                 shortlist: Optional[Tensor] = None):
    """The decoder of ``mode``; the oracle modes need ``known`` (greedy's outputs), the
    n-gram modes ``ngram_index``; ``shortlist`` (--draft-vocab) goes to the chain drafter.
    fairseq's modes and SpecDec's are built by the same ``build_generator`` the task calls
    for fairseq-generate."""
    search = dict(max_len_a=args.max_len_a, max_len_b=args.max_len_b)
    if mode.startswith("ct2_"):
        return peer.CT2Decoder(ct2, mode, BEAMS[mode], search, model.max_decoder_positions())
    graphs = GraphOptions() if args.cuda_graphs else None  # the plugin's modes only
    sampling = SamplingRule(topk=SAMPLE_TOPK) if mode in SAMPLING_MODES else None
    if mode not in SPECDEC_MODES:
        plan = DecodingPlan(beam=BEAMS.get(mode, 1), lean_greedy=mode in LEAN_MODES,
                            graphs=graphs if mode in LEAN_MODES else None, sampling=sampling)
        return FairseqDecoder(build_generator([model], tgt_dict, plan, search, stats=stats), model)
    trained = drafter if mode in NEEDS_DRAFTER else None
    shortlist = shortlist if trained is not None else None  # the trained drafter's vocabulary
    proposer = _proposer(mode, model, trained, tgt_dict, ngram_index, graphs, shortlist)
    if mode in ORACLE_MODES:
        if known is None:
            raise ValueError(f"mode {mode} drafts greedy's outputs: pass them as known=")
        proposer = OracleDrafter(known, tgt_dict.pad(), tgt_dict.eos(), cost=proposer)
    beta, tau = (args.beta, args.tau) if mode == "specdec_relaxed" else (1, 1.0)
    plan = DecodingPlan(proposer=proposer, block_size=args.block_size, beta=beta, tau=tau, graphs=graphs,
                        adaptive=mode not in FIXED_BLOCK_MODES, sampling=sampling, drafter=trained,
                        draft_vocab=0 if shortlist is None else shortlist.numel())
    return FairseqDecoder(build_generator([model], tgt_dict, plan, search, stats=stats), model)
