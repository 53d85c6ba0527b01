"""Which verifiers the lean block forward decodes, and the clear refusal of the others.

Untrained models built through fairseq's own registry (``fairseq.models.build_model``)
over a small dictionary: a BART (``bart_base``'s options: learned positions,
layernorm_embedding, GELU, all embeddings shared, post-norm, unscaled embeddings; fewer and
narrower layers), an alignment Transformer (``transformer_align``) and a Transformer with
``--quant-noise-pq`` (whose decoder applies an extra input projection at inference) decode
exactly fairseq's greedy output with lean greedy and SpecDec, with a drafter that is
always right and one that is always wrong. A language model, an LSTM and the options the
lean forward does not implement are refused when the generator is built, naming the
architecture and the option."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from fairseq import models, options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase
from fairseq.sequence_generator import SequenceGenerator

import fairseq_specdec  # noqa: F401  (registers the plugin's models)
from fairseq_specdec.drafting.kinds import make_proposer
from fairseq_specdec.benchmark.oracle import OracleDrafter, source_key
from fairseq_specdec.decoding.generators import build_generator
from fairseq_specdec.decoding.plan import DecodingPlan
from fairseq_specdec.verification.static_rows import GraphOptions
from fairseq_specdec.decoding.stats import DecodingStats
from fairseq_specdec.verification.verifier import UnsupportedVerifierError

from lossless_drafters import WrongDrafter
from plain_rules import greedy_with_ban, repeated_ngrams

K = 4
SEARCH = dict(max_len_b=16)
SMALL = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
         "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
         "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]


def dictionary(words: int = 40) -> Dictionary:
    d = Dictionary()
    for i in range(words):
        d.add_symbol(f"w{i}")
    return d


D = dictionary()


def build(arch: str, extra=(), task: str = "translation"):
    """An untrained model of ``arch`` as fairseq-train would build it, in eval mode."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["unused-data-dir", "--task", task, "--arch", arch, *extra])
    torch.manual_seed(0)
    model = models.build_model(convert_namespace_to_omegaconf(args).model,
                               SimpleNamespace(source_dictionary=D, target_dictionary=D))
    return model.eval()


def spread_weights(model, seed: int = 3):
    """Random weights under which the greedy output depends on the source and the position.
    With BART's own init (std 0.02) and its shared embeddings every sentence repeats one
    token; positions 10x the token embeddings' scale break that copying."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                std = 3.0 if "embed_positions" in name else 0.3 if "embed_tokens" in name else 1 / math.sqrt(p.size(1))
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def sources(n: int = 8, seed: int = 1):
    """A fairseq batch of n random sources of different lengths (left-padded, eos last)."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(D.nspecial, len(D), (3 + 2 * i,), generator=gen).tolist() + [D.eos()] for i in range(n)]
    width = max(map(len, rows))
    src = torch.full((n, width), D.pad())
    for i, row in enumerate(rows):
        src[i, width - len(row):] = torch.tensor(row)
    return {"id": torch.arange(n), "net_input": {"src_tokens": src, "src_lengths": torch.tensor(list(map(len, rows)))}}


def generate(generator, model, sample):
    with torch.no_grad():
        return [h[0] for h in generator.generate([model], sample)]


def assert_decodes_losslessly(model, search=SEARCH, reference=None):
    """Lean greedy (own cache and static buffers) and SpecDec (always-right and always-wrong
    drafts) give the tokens of fairseq's greedy (or of ``reference``, a generator) bitwise and
    its scores (fp32), under fairseq's options ``search``; returns the reference's hypotheses."""
    sample = sources()
    reference = reference or SequenceGenerator([model], D, beam_size=1, **search)
    want = generate(reference, model, sample)
    assert len({tuple(h["tokens"].tolist()) for h in want}) >= len(want) // 2, "the outputs should depend on the source"
    known = {source_key(row, D.pad()): h["tokens"].tolist() for row, h in zip(sample["net_input"]["src_tokens"], want)}
    runs = {
        "lean": DecodingPlan(lean_greedy=True),
        "lean static": DecodingPlan(lean_greedy=True, graphs=GraphOptions(capture=False)),
        "oracle": DecodingPlan(proposer=OracleDrafter(known, D.pad(), D.eos()), block_size=K),
        "wrong": DecodingPlan(proposer=WrongDrafter(known, D), block_size=K),
    }
    tokens = sum(len(h["tokens"]) for h in want)
    for name, decoding in runs.items():
        stats = DecodingStats()
        got = generate(build_generator([model], D, decoding, search, stats=stats), model, sample)
        for g, w in zip(got, want):
            assert g["tokens"].tolist() == w["tokens"].tolist(), name
            assert torch.allclose(g["positional_scores"], w["positional_scores"], atol=1e-5, rtol=0), name
            assert abs(float(g["score"]) - float(w["score"])) < 1e-5, name
        if name == "oracle":
            assert stats.iterations < tokens / 2, "perfect drafts commit several tokens per iteration"
        if name == "wrong":
            assert stats.accepted_drafts == 0 and stats.iterations == tokens
    return want


def test_bart_verifier_decodes_losslessly():
    model = spread_weights(build("bart_base", SMALL))
    dec = model.decoder
    assert type(model).__name__ == "BARTModel" and model.args.arch == "bart_base"
    # bart_base's options, kept by the reduced shape
    assert type(dec.embed_positions).__name__ == "LearnedPositionalEmbedding"
    assert dec.layernorm_embedding is not None and dec.embed_scale == 1.0 and dec.layer_norm is None
    assert all(not layer.normalize_before and layer.activation_fn.__name__ == "gelu" for layer in dec.layers)
    assert model.encoder.embed_tokens is dec.embed_tokens and dec.output_projection.weight is dec.embed_tokens.weight
    assert_decodes_losslessly(model)


def test_bart_verifier_with_the_summarization_options_decodes_losslessly():
    """The paper's CNN/DM settings on a bart_base-shaped verifier: --no-repeat-ngram-size 3,
    --min-len and --lenpen (the n-gram ban's reference: fairseq's greedy with a correct
    blocker, since fairseq 0.12's Python one bans nothing); each option changes the output."""
    model = spread_weights(build("bart_base", SMALL))
    with torch.no_grad():  # an eos the model reaches after 2 to 21 tokens, or not before the limit
        model.decoder.output_projection.weight[D.eos()] *= 2.5
    search = dict(max_len_b=24, min_len=8, len_penalty=2.0)
    banned = assert_decodes_losslessly(model, dict(search, no_repeat_ngram_size=3),
                                       reference=greedy_with_ban([model], D, 3, **search))
    plain = generate(SequenceGenerator([model], D, beam_size=1, **search), model, sources())
    free = generate(SequenceGenerator([model], D, beam_size=1, max_len_b=24), model, sources())
    assert any(repeated_ngrams(h["tokens"].tolist(), 3) for h in plain), "the ban must have something to ban"
    assert not any(repeated_ngrams(h["tokens"].tolist(), 3) for h in banned)
    assert any(len(h["tokens"]) <= search["min_len"] for h in free), "--min-len must lengthen some output"
    assert all(len(h["tokens"]) > search["min_len"] for h in banned)


def test_alignment_transformer_decodes_losslessly():
    """transformer_align's alignment heads only shape the attention it returns in training:
    decoding is the Transformer's (--print-alignment itself is refused with SpecDec)."""
    model = spread_weights(build("transformer_align", SMALL + ["--alignment-layer", "1", "--alignment-heads", "2"]))
    assert type(model).__name__ == "TransformerAlignModel"
    assert_decodes_losslessly(model)


def test_quant_noise_verifier_decodes_losslessly():
    """--quant-noise-pq gives the decoder an input projection fairseq applies at inference too."""
    model = spread_weights(build("transformer", SMALL + ["--quant-noise-pq", "0.1", "--quant-noise-pq-block-size", "8"]))
    assert model.decoder.quant_noise is not None
    assert_decodes_losslessly(model)


# ---------------------------------------------------------------- refusals

def language_model():
    return build("transformer_lm", ["--decoder-layers", "1", "--decoder-embed-dim", "16",
                                    "--decoder-ffn-embed-dim", "16", "--decoder-attention-heads", "2"],
                 task="language_modeling")


def lstm():
    return build("lstm", ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-hidden-size", "16",
                          "--decoder-hidden-size", "16", "--decoder-out-embed-dim", "16"])


def with_layer(options_set: dict, **layer_kwargs):
    """A translation Transformer whose first decoder layer is fairseq's own layer built with
    options the translation CLI does not expose (NormFormer's, add_bias_kv, add_zero_attn)."""
    model = build("transformer", SMALL)
    cfg = copy.deepcopy(model.decoder.cfg)
    for name, value in options_set.items():
        setattr(cfg, name, value)
    model.decoder.layers[0] = TransformerDecoderLayerBase(cfg, **layer_kwargs).eval()
    return model


REFUSED = {
    "transformer_lm": (language_model, ["TransformerLanguageModel", "transformer_lm", "decoder-only",
                                        "encoder-decoder fairseq Transformer"]),
    "lstm": (lstm, ["LSTMModel (registered as lstm)", "LSTMEncoder", "LSTMDecoder",
                    "encoder-decoder fairseq Transformer"]),
    "adaptive_softmax": (lambda: build("transformer", SMALL + ["--adaptive-softmax-cutoff", "20"]),
                         ["--arch transformer", "--adaptive-softmax-cutoff"]),
    "cross_self_attention": (lambda: build("transformer", SMALL + ["--cross-self-attention"]),
                             ["--arch transformer", "--cross-self-attention"]),
    "normformer": (lambda: with_layer({"scale_attn": True}), ["NormFormer", "attn_ln", "--scale-attn"]),
    "bias_kv": (lambda: with_layer({}, add_bias_kv=True), ["add_bias_kv"]),
    "zero_attn": (lambda: with_layer({}, add_zero_attn=True), ["add_zero_attn"]),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_unsupported_verifier_is_refused_when_the_generator_is_built(kind):
    make, fragments = REFUSED[kind]
    model = make()
    oracle = OracleDrafter({}, D.pad(), D.eos())
    for decoding in (DecodingPlan(lean_greedy=True), DecodingPlan(proposer=oracle, block_size=K),
                     DecodingPlan(lean_greedy=True, graphs=GraphOptions(capture=False))):
        with pytest.raises(UnsupportedVerifierError) as err:
            build_generator([model], D, decoding, SEARCH)
        for fragment in fragments + ["fairseq's own search"]:
            assert fragment in str(err.value), (fragment, str(err.value))
    # the error's alternative: fairseq's own search builds for it (a language model needs its own task)
    if kind != "transformer_lm":
        assert isinstance(build_generator([model], D, DecodingPlan(), SEARCH), SequenceGenerator)


def test_trained_drafter_next_to_a_language_model_is_refused():
    """The drafting side is built first (the task's build_generator): it checks the verifier
    before a drafter reads its encoder, instead of failing with AttributeError: encoder."""
    drafter = build("specdec_drafter_tiny")
    with pytest.raises(UnsupportedVerifierError, match="TransformerLanguageModel"):
        make_proposer(drafter, D, language_model())
