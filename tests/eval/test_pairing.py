"""The pairing rule of launch/make_pairs.py (eval/pairs/pairing.py): language first, then instruction verdicts,
then the order of sampling."""

from eval.pairs.pairing import NO_TARGET_LANGUAGE_ANSWER, NO_WORSE_ANSWER, Answer, Pair, choose_pair


def answer(index, language, followed=0, *, text=None, truncated=False):
    return Answer(index, text if text is not None else f"answer {index}", language, truncated, followed)


def indices(result):
    assert isinstance(result, Pair), result
    return result.chosen.index, result.rejected.index


def test_language_decides_before_instructions():
    # the English answer follows every instruction, yet the Finnish one is chosen and the English one rejected
    answers = [answer(0, "en", 3), answer(1, "fi", 1)]
    assert indices(choose_pair(answers, target_lang="fi")) == (1, 0)


def test_chosen_follows_the_most_instructions_and_ties_go_to_the_first_sampled():
    answers = [answer(0, "fi", 1), answer(1, "fi", 2), answer(2, "fi", 2), answer(3, "fi", 0)]
    assert indices(choose_pair(answers, target_lang="fi")) == (1, 3)


def test_a_wrong_language_answer_is_rejected_before_a_weaker_target_language_one():
    answers = [answer(0, "fi", 2), answer(1, "fi", 0), answer(2, "sv", 2), answer(3, "en", 1)]
    # among the wrong-language answers, the one following fewer instructions (3) is rejected
    assert indices(choose_pair(answers, target_lang="fi")) == (0, 3)


def test_rejected_ties_go_to_the_first_sampled():
    answers = [answer(0, "fi", 2), answer(1, "en", 1), answer(2, "en", 1)]
    assert indices(choose_pair(answers, target_lang="fi")) == (0, 1)
    weaker = [answer(0, "fi", 2), answer(1, "fi", 1), answer(2, "fi", 1)]
    assert indices(choose_pair(weaker, target_lang="fi")) == (0, 1)


def test_unrecognised_language_counts_as_another_language():
    answers = [answer(0, None, 0, text="1234 !!"), answer(1, "fi", 0)]
    assert indices(choose_pair(answers, target_lang="fi")) == (1, 0)


def test_truncated_answers_are_never_chosen_unless_allowed():
    answers = [answer(0, "fi", 3, truncated=True), answer(1, "fi", 1), answer(2, "en", 0)]
    assert indices(choose_pair(answers, target_lang="fi")) == (1, 2)
    assert indices(choose_pair(answers, target_lang="fi", allow_truncated=True)) == (0, 2)
    only_cut = [answer(0, "fi", 1, truncated=True), answer(1, "en", 0)]
    assert choose_pair(only_cut, target_lang="fi") == NO_TARGET_LANGUAGE_ANSWER
    # a truncated answer may still be the rejected one
    assert indices(choose_pair([answer(0, "fi"), answer(1, "en", truncated=True)], target_lang="fi")) == (
        0,
        1,
    )


def test_no_pair_without_a_target_language_answer():
    assert choose_pair([answer(0, "en", 2), answer(1, "sv")], target_lang="fi") == NO_TARGET_LANGUAGE_ANSWER
    assert choose_pair([answer(0, "fi", text="   ")], target_lang="fi") == NO_TARGET_LANGUAGE_ANSWER


def test_no_pair_when_every_other_answer_is_as_good():
    answers = [answer(0, "fi", 1), answer(1, "fi", 1), answer(2, "fi", 1)]
    assert choose_pair(answers, target_lang="fi") == NO_WORSE_ANSWER


def test_an_answer_equal_to_the_chosen_or_empty_is_never_rejected():
    same = [answer(0, "fi", 1, text="Hei maailma"), answer(1, None, 0, text="  Hei maailma \n")]
    assert choose_pair(same, target_lang="fi") == NO_WORSE_ANSWER
    empty = [answer(0, "fi", 1), answer(1, None, 0, text="")]
    assert choose_pair(empty, target_lang="fi") == NO_WORSE_ANSWER
