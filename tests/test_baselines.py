"""The classical baselines of benchmarks/baselines.py and the model tiling of heldout_eval.py."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from baselines import (  # noqa: E402
    MarkovModel,
    Score,
    base_codes,
    count_transitions,
    interpolated_tables,
    kmer_codes,
    score,
)
from heldout_eval import masked_base_probabilities, model_base_probabilities  # noqa: E402

A, C, G, T = range(4)


def test_base_codes_upper_cases_and_marks_everything_else():
    assert base_codes("ACGTacgtNRx").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, -1, -1, -1]


def test_kmer_codes_put_the_latest_base_lowest():
    # "GAT" ends at index 2: G*16 + A*4 + T
    assert kmer_codes(base_codes("GAT"), 3)[2] == G * 16 + A * 4 + T


def test_counts_and_probabilities_by_hand():
    # transitions A->C, C->A, A->A, A->G; bases A3 C1 G1 T0
    training = [base_codes("ACAAG")]
    counts = count_transitions(training, max_order=1)
    assert counts[0].tolist() == [[3, 1, 1, 0]]
    assert counts[1][A].tolist() == [1, 1, 1, 0]
    assert counts[1][C].tolist() == [1, 0, 0, 0]
    assert counts[1][G].sum() == counts[1][T].sum() == 0

    mle = interpolated_tables(counts, [0, 0])
    np.testing.assert_allclose(mle[0][0], [0.6, 0.2, 0.2, 0.0])
    np.testing.assert_allclose(mle[1][A], [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(mle[1][C], [1, 0, 0, 0])
    np.testing.assert_allclose(mle[1][T], mle[0][0])  # unseen context: the order below

    smoothed = interpolated_tables(counts, [3, 2])  # strength 3 for order 0, 2 for order 1
    unigram = (np.array([3, 1, 1, 0]) + 3 * 0.25) / (5 + 3)
    np.testing.assert_allclose(smoothed[0][0], unigram)
    np.testing.assert_allclose(smoothed[1][A], (np.array([1, 1, 1, 0]) + 2 * unigram) / (3 + 2))
    np.testing.assert_allclose(smoothed[1][T], unigram)
    for table in smoothed:
        np.testing.assert_allclose(table.sum(axis=1), 1)


def test_interpolation_drops_the_oldest_context_base():
    # "CA" never occurs, so P_2(. | CA) is exactly P_1(. | A), and P_1(. | A) != P_1(. | C)
    tables = MarkovModel.fit([base_codes("AAGACCTCCTTGTT")], order=2, strength=1).tables
    assert not np.allclose(tables[1][A], tables[1][C])
    np.testing.assert_allclose(tables[2][C * 4 + A], tables[1][A])
    # "GA" occurs once, followed by C
    expected = (np.eye(4)[C] + 1 * tables[1][A]) / (1 + 1)
    np.testing.assert_allclose(tables[2][G * 4 + A], expected)


def test_counts_match_a_plain_loop_over_windows():
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=3000))
    order = 3
    expected = np.zeros((4**order, 4), dtype=np.int64)
    for end in range(order, len(text)):
        window = text[end - order : end + 1]
        if "N" not in window:
            context = int("".join(str("ACGT".index(b)) for b in window[:-1]), 4)
            expected[context, "ACGT".index(window[-1])] += 1
    assert np.array_equal(count_transitions([base_codes(text)], order)[order], expected)


def test_order_zero_is_the_unigram_frequency():
    text = "AACGTTTGCAAAGGC"
    frequencies = np.array([text.count(b) for b in "ACGT"]) / len(text)
    model = MarkovModel.fit([base_codes(text)], order=0, strength=0)
    probs = model.base_probabilities(base_codes("GATTACA"))
    np.testing.assert_allclose(probs, np.tile(frequencies, (7, 1)))


def test_windows_with_n_are_not_counted():
    counts = count_transitions([base_codes("ACNGT")], max_order=2)
    assert counts[0].tolist() == [[1, 1, 1, 1]]
    assert counts[1].sum() == 2 and counts[1][A, C] == 1 and counts[1][G, T] == 1
    assert counts[2].sum() == 0


def test_pieces_are_counted_separately():
    joined = count_transitions([base_codes("ACGT")], max_order=1)
    split = count_transitions([base_codes("AC"), base_codes("GT")], max_order=1)
    assert joined[1][C, G] == 1 and split[1][C, G] == 0


def test_prediction_after_n_uses_the_context_that_is_there():
    model = MarkovModel.fit([base_codes("ACGTTGCAAGCT" * 20)], order=2, strength=1)
    probs = model.base_probabilities(base_codes("ACNGT"))
    np.testing.assert_allclose(probs[0], model.tables[0][0])  # sequence start
    np.testing.assert_allclose(probs[1], model.tables[1][A])
    np.testing.assert_allclose(probs[3], model.tables[0][0])  # right after the N
    np.testing.assert_allclose(probs[4], model.tables[1][G])


def test_periodic_sequence():
    periodic = base_codes("ACGT" * 1000)
    unigram = MarkovModel.fit([periodic], order=0, strength=1)
    unigram_score = score(unigram.base_probabilities(periodic), periodic)
    assert unigram_score.accuracy == pytest.approx(0.25)
    assert unigram_score.perplexity == pytest.approx(4.0)
    for order in (1, 3):
        markov = MarkovModel.fit([periodic], order=order, strength=1)
        markov_score = score(markov.base_probabilities(periodic), periodic)
        assert markov_score.accuracy > 0.999
        assert markov_score.perplexity < 1.01


def test_score_perplexity_and_accuracy():
    probs = np.array(
        [[0.5, 0.2, 0.2, 0.1], [0.5, 0.25, 0.125, 0.125], [0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.1, 0.7]]
    )
    codes = base_codes("ACAN")  # the N is not scored
    result = score(probs, codes)
    assert result.count == 3
    assert result.perplexity == pytest.approx(math.exp((math.log(2) + math.log(4) + math.log(10)) / 3))
    assert result.accuracy == pytest.approx(1 / 3)
    pooled = result + Score(nll_sum=0.0, correct=1, count=1)
    assert pooled.count == 4 and pooled.accuracy == pytest.approx(2 / 4)


class TrueBaseModel:
    """Puts almost all probability on the base it is given: any misplaced window, position or
    complement in the tiling shows up as a wrong prediction."""

    class config:
        max_seq_len = 4

    def base_log_probs(self, ids):
        one_hot = torch.nn.functional.one_hot((ids - 7).clamp(0, 3), 4).float()
        return torch.log_softmax(10 * one_hot, dim=-1)


def test_model_windows_and_reverse_complement_map_back():
    import janusdna

    sequence = "ACGGTACCATN"  # 11 bases: two full windows of 4 and a tail of 3
    codes = base_codes(sequence)
    forward, rc_averaged = model_base_probabilities(TrueBaseModel(), janusdna.encode(sequence), batch_size=1)
    assert forward.shape == rc_averaged.shape == (11, 4)
    for probs in (forward, rc_averaged):
        result = score(probs, codes)
        assert result.count == 10 and result.accuracy == 1.0
    np.testing.assert_allclose(rc_averaged[codes >= 0], forward[codes >= 0], atol=1e-6)


def test_a_masked_models_sampled_positions_are_its_per_base_predictions_there(tiny_mergedna_dir):
    """heldout_eval --positions with MergeDNA: each sampled base is masked alone in its window of
    the same tiling, on both strands; one window at a time, built here, is the independent check."""
    import dnalm
    from dnalm.tokenizer import MASK

    model = dnalm.load(tiny_mergedna_dir).eval()
    window = model.config.max_seq_len
    rng = np.random.default_rng(3)
    ids = dnalm.encode("".join(rng.choice(list("ACGT"), 2 * window + 40)))
    positions = np.array([0, 5, window - 1, window, window + 17, 2 * window + 3, 2 * window + 39])
    forward, rc_averaged = masked_base_probabilities(model, ids, positions, batch_size=3)
    with torch.inference_mode():
        for k, position in enumerate(positions):
            start = position // window * window
            block = ids[start:start + window][None].clone()
            block[0, position - start] = MASK
            expected = model.masked_base_log_probs(block)[0, position - start].exp()
            rc = model.masked_base_log_probs(dnalm.reverse_complement(block))[0].flip(0).flip(-1)[position - start].exp()
            np.testing.assert_allclose(forward[k], expected.numpy(), atol=1e-5)
            np.testing.assert_allclose(rc_averaged[k], ((expected + rc) / 2).numpy(), atol=1e-5)
