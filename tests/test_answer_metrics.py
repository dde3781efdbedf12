"""The papers' answer metrics against hand-computed and published values."""

import pytest

from continual.answer_metrics import edit_similarity, exact_match, letter, number, rougeL_f1, sari, score


def test_sari_equals_the_worked_example_hugging_face_evaluate_documents():
    sources = ["About 95 species are currently accepted."]
    predictions = ["About 95 you now get in."]
    references = [["About 95 species are currently known.", "About 95 species are now accepted.",
                   "95 species are now accepted."]]
    assert 100 * sari(predictions, references, sources)[0] == pytest.approx(26.953601953601954, abs=1e-9)


def test_sari_of_copying_a_reference_that_equals_the_source_is_perfect():
    assert sari(["the cat sat ."], [["the cat sat ."]], ["the cat sat ."])[0] == pytest.approx(1.0)


def test_exact_match_is_stripped_and_case_folded():
    assert exact_match([" World", "sports ", "Science or  Technology", "World news"],
                       ["world", "Sports", "science or technology", "World"]).tolist() == [1, 1, 1, 0]


def test_letter_and_number_take_the_first_one():
    assert letter(["B", "The answer is C.", "none", "A\\nbecause"], ["B\\nA clause ...", "B", "A", "A"]).tolist() == \
        [1, 0, 0, 1]
    assert number(["6", "It is 6.0 frogs", "1,200", "seven"], ["6", "6", "1200", "7"]).tolist() == [1, 1, 1, 0]


def test_edit_similarity_and_rouge_l_against_hand_values():
    # Levenshtein ratio: 2 * matches / total length = 2 * 3 / 8
    assert edit_similarity(["abcd"], ["abce"])[0] == pytest.approx(0.75)
    # LCS of "the cat sat" and "the cat sat down" is 3 tokens: P = 1, R = 3/4, F1 = 6/7
    assert rougeL_f1(["the cat sat"], ["the cat sat down"])[0] == pytest.approx(6 / 7)
    assert score("exact_match", ["a"], ["a"]).tolist() == [1.0]
