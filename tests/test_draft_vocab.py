"""--draft-vocab N: the chain drafter drafts among the N most frequent train target tokens.
The shortlist itself on hand-built counts; then through the task with a trained chain
drafter: drafts stay inside the shortlist and the output stays greedy's."""
import pytest
import torch

from fairseq_specdec.drafting.chain import ChainDrafter
from fairseq_specdec.drafting.draft_vocab import DraftVocabError, load_shortlist, shortlist, target_counts

from test_feature_drafter import Recording, loaded, static_chain_generator
from test_speculative_lossless import assert_same_tokens, decode, greedy, lossless_batches, setup

EOS = 2
FORBIDDEN = torch.tensor([0, 1, 3])  # bos, pad, unk


def test_target_counts():
    counts = target_counts([torch.tensor([5, 6, 5, 2]), torch.tensor([7, 2])], vocab=9)
    assert counts.tolist() == [0, 0, 2, 0, 0, 2, 1, 1, 0]
    assert target_counts([], vocab=3).tolist() == [0, 0, 0]


def test_shortlist_keeps_the_most_frequent_and_eos_never_the_forbidden():
    counts = torch.tensor([90, 80, 1, 70, 5, 9, 9, 0, 3])  # specials frequent, eos rare, token 7 never seen
    assert shortlist(counts, 1, EOS, FORBIDDEN).tolist() == [2]  # eos first, whatever its count
    assert shortlist(counts, 3, EOS, FORBIDDEN).tolist() == [2, 5, 6]  # 5 and 6 tie at 9
    assert shortlist(counts, 4, EOS, FORBIDDEN).tolist() == [2, 4, 5, 6]
    assert shortlist(counts, 100, EOS, FORBIDDEN).tolist() == [2, 4, 5, 6, 8]  # never-seen 7 left out
    with pytest.raises(DraftVocabError, match="--draft-vocab must be >= 1"):
        shortlist(counts, 0, EOS, FORBIDDEN)


def test_load_shortlist_from_the_train_targets(demo_data, tmp_path):
    verifier_dict = setup_dictionary(demo_data)
    chosen = load_shortlist(str(demo_data["bin"]), "en", "de", verifier_dict, 50)
    assert chosen.numel() == 50 and verifier_dict.eos() in chosen.tolist()
    assert not {verifier_dict.pad(), verifier_dict.bos(), verifier_dict.unk()} & set(chosen.tolist())
    with pytest.raises(DraftVocabError, match="counts the tokens of the train targets"):
        load_shortlist(str(tmp_path), "en", "de", verifier_dict, 50)


def setup_dictionary(demo_data):
    from fairseq.data import Dictionary

    return Dictionary.load(str(demo_data["bin"] / "dict.de.txt"))


def test_chain_drafts_stay_in_the_shortlist_and_the_output_is_greedys(demo_data, tiny_verifier, chain_drafter):
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(chain_drafter), "--draft-vocab", "40",
                                                         "--fixed-block"])
    generator = task.build_generator(models, cfg.generation)
    drafter = generator.drafter
    assert isinstance(drafter, ChainDrafter) and drafter.shortlist.numel() == 40
    allowed = set(drafter.shortlist.tolist())
    recording = generator.drafter = Recording(drafter)
    samples = lossless_batches(task)[16][:4]
    assert_same_tokens(decode(generator, models, samples), greedy(models, task.target_dictionary, samples))
    drafted = {t for _prefix, drafts in recording.calls for t in drafts.flatten().tolist()}
    assert drafted and drafted <= allowed
    # with the drafter's confidence (the combined drafter's call): the same drafts
    state = drafter.start(samples[0]["net_input"])
    plain = drafter.propose(state, None, 4)
    tokens, probs = drafter.propose_with_confidence(state, None, 4)
    assert torch.equal(tokens, plain) and bool(((probs > 0) & (probs <= 1)).all())


def test_static_chain_drafter_drafts_the_same_over_the_shortlist(demo_data, tiny_verifier, chain_drafter):
    """The --cuda-graphs path (run eagerly) with a shortlist: the same drafts and acceptance
    as the chain drafter over its own cache, with and without the drafter's confidence."""
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(chain_drafter), "--draft-vocab", "40",
                                                         "--fixed-block"])
    eager = task.build_generator(models, cfg.generation)
    static, stats = static_chain_generator(eager, models, task.target_dictionary, capture=False)
    static.drafter.shortlist = eager.drafter.shortlist
    samples = lossless_batches(task)[16][:2]
    want = greedy(models, task.target_dictionary, samples)
    assert_same_tokens(decode(static, models, samples), want)
    assert_same_tokens(decode(eager, models, samples), want)
    assert stats.accepted_histogram == task.decoding_stats.accepted_histogram
    state = static.drafter.start(samples[0]["net_input"])
    prefix = samples[0]["net_input"]["prev_output_tokens"][:, :1]  # width 1: only the BOS is committed
    tokens, probs = static.drafter.propose_with_confidence(state, prefix, 4)
    assert torch.equal(tokens, static.drafter.propose(state, prefix, 4))
    assert set(tokens.flatten().tolist()) <= set(eager.drafter.shortlist.tolist())
    assert bool(((probs > 0) & (probs <= 1)).all())


def test_draft_vocab_is_for_the_chain_drafter(demo_data, tiny_verifier, tiny_drafter):
    cfg, task, models = setup(demo_data, tiny_verifier, ["--drafter-path", str(tiny_drafter), "--draft-vocab", "40"])
    with pytest.raises(ValueError, match="--draft-vocab drafts the chain drafter's tokens"):
        task.build_generator(models, cfg.generation)
    cfg, task, models = setup(demo_data, tiny_verifier, ["--lean-greedy", "--draft-vocab", "40"])
    with pytest.raises(ValueError, match="--draft-vocab sets the chain drafter's vocabulary"):
        task.build_generator(models, cfg.generation)


def test_whole_vocabulary_by_default(demo_data, tiny_verifier, chain_drafter):
    _task, _models, generator = loaded(demo_data, tiny_verifier, chain_drafter, ChainDrafter)
    assert generator.drafter.shortlist is None
