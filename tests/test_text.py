"""lite_align.text: NLTK-identical tokens (hand cases, random tricky text, the whole paper release),
the shipped stop words, word bags and lengths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from release import conflictingqa, reference_rows

from lite_align import text
from lite_align.text import analyse, nltk_word_tokenize, response_length, tokenize, word_bag


def release_root() -> Path:
    return conflictingqa()


# --------------------------------------------------------------------------------------------------
# stop words


def test_stop_word_file_holds_nltks_179_words_under_a_header() -> None:
    path = Path(text.__file__).parent / "data" / "stopwords_en.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and "stop" in lines[0].lower()
    words = [w for w in lines[1:] if w.strip()]
    assert len(words) == 179 and len(set(words)) == 179
    assert text.STOP_WORDS == frozenset(words)
    assert {"i", "me", "ourselves", "the", "won't", "wouldn", "wouldn't", "should've"} <= text.STOP_WORDS
    assert "The" not in text.STOP_WORDS and "yes" not in text.STOP_WORDS


# --------------------------------------------------------------------------------------------------
# tokens: hand cases whose answers follow NLTK's documented behaviour

HAND_CASES = [
    (
        "Good muffins cost $3.88\nin New York.",
        ["Good", "muffins", "cost", "$", "3.88", "in", "New", "York", "."],
    ),
    ("Dr. Smith went home. He was tired.", ["Dr.", "Smith", "went", "home", ".", "He", "was", "tired", "."]),
    (
        "I can't, won't, and gonna go.",
        ["I", "ca", "n't", ",", "wo", "n't", ",", "and", "gon", "na", "go", "."],
    ),
    ('She said "hi" (twice).', ["She", "said", "``", "hi", "''", "(", "twice", ")", "."]),
    (
        "It costs 4,000 dollars: 3.5% more...",
        ["It", "costs", "4,000", "dollars", ":", "3.5", "%", "more", "..."],
    ),
    ("The U.S. is big. e.g. Texas!", ["The", "U.S.", "is", "big", ".", "e.g", ".", "Texas", "!"]),
    ("", []),
    ("   \n ", []),
]


@pytest.mark.parametrize(("source", "expected"), HAND_CASES)
def test_tokenize_hand_cases(source: str, expected: list[str]) -> None:
    assert tokenize(source) == expected
    assert nltk_word_tokenize(source) == expected


TRICKY = [
    "Mr. and Mrs. J. R. Smith arrived at 5 p.m. on Jan. 3. They left.",
    "He said, 'it's fine.' Then: \"no.\"\nNext line...",
    "1. First point.\n2. Second point.\n- a bullet\n- another",
    "“Curly quotes,” she wrote — and «guillemets» too; ‘single’ ones.",
    "Wait?! Really?? (Yes.) [No!] {Maybe.}",
    "'Tis true: d'ye know? I cannot; lemme see, gimme more'n that, wanna go.",
    "Ellipses.. and... more.... end. . . done.",
    "Quote at start:\n\"Hello,\" he said.\n''Double single'' quotes.",
    "Numbers 3.14, 1,000.5 and -2.5e10; 50% of $100 & #tags @you *bold* --dash-- –en— em.",
    "No space after period.Next sentence.And another",
    "e.g., i.e., etc. are abbreviations (e.g. this one).",
    "Trailing spaces and tabs.\t \n\n New paragraph.  ",
    "A sentence ending in a closer.) And a quote.\" Then more.'",
    "```python\nprint('x')\n```\nDone.",
    "Unicode: naïve café, x\u0301, 2² and emoji 🙂. Fine.",
]


@pytest.mark.parametrize("source", TRICKY)
def test_tokenize_equals_nltk_on_tricky_text(source: str) -> None:
    assert tokenize(source) == nltk_word_tokenize(source)


FRAGMENTS = [
    *["Dr.", "e.g.", "U.S.", "Mr", "cannot", "gonna", "wanna", "Gimme", "don't", "'tis", "I'm", "it's"],
    *["3.5", "1.", "2.", "a", "The", "x", "hello", "World", "d'ye", "more'n", "CAN'T", "No.", "St."],
    *["p.m.", "J.", "4,000", "5:30", "é", "naïve", "²"],
    *['"', "''", "'", "``", "`", "«", "»", "“", "”", "‘", "’", "„", "(", ")", "[", "]", "{", "}"],
    *["<", ">", ",", ":", ";", ".", "...", "..", "?", "!", "--", "—", "–", "*", "&", "$", "%", "@", "#", "-"],
    *[" ", " ", " ", "  ", "\n", "\n\n", "\t", "\u00a0", "\x1c", "\r\n", "\u2028", "\x85"],
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map("".join))
def test_tokenize_equals_nltk_on_random_tricky_text(source: str) -> None:
    assert tokenize(source) == nltk_word_tokenize(source)


def test_tokenize_equals_nltk_on_every_response_of_the_release() -> None:
    """All 13,020 responses of the six sampled sets of the reference table, token list for token list (~15 s)."""
    files = [release_root() / "outputs" / row["set"] / "samples.jsonl" for row in reference_rows("within_prompt")]
    assert len(files) == 6
    texts = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for out in row["outputs"]:
                texts.append(out["generated_text"] if "generated_text" in out else out["message"]["content"])
    assert len(texts) == 13_020
    text.clear_caches()
    mismatched = [t for t in texts if tokenize(t) != nltk_word_tokenize(t)]
    assert mismatched == []


def test_memos_do_not_change_answers() -> None:
    source = 'He said "no." Then: it\'s 5 p.m. "Yes," she said.\n"Quoted" start.'
    text.clear_caches()
    cold = tokenize(source)
    assert tokenize(source) == cold == nltk_word_tokenize(source)


# --------------------------------------------------------------------------------------------------
# bags and lengths


def test_word_bag_drops_ascii_punctuation_and_case_sensitive_stop_words() -> None:
    # tokens: The cat , the hat and I -- `` we '' saw them ...
    bag = word_bag('The cat, the hat and I -- "we" saw them...')
    assert bag == frozenset({"The", "cat", "hat", "I", "saw"})


def test_word_bag_keeps_non_ascii_punctuation_and_clitics() -> None:
    # “ and ” are not ASCII punctuation: kept, as the method says; n't and 's are not stop words
    assert word_bag("“Don't,” it's Bob's.") == frozenset({"“", "Do", "n't", "”", "Bob", "'s"})


def test_response_length_counts_stop_words_but_not_punctuation() -> None:
    assert response_length("The cat, the hat... and I!") == 6  # The cat the hat and I
    assert response_length("...") == 0
    assert response_length("") == 0


def test_analyse_is_bag_and_length_from_one_pass() -> None:
    source = "Yes, they are. Audiobooks are reading."
    assert analyse(source) == (word_bag(source), response_length(source))
    assert analyse(source) == (frozenset({"Yes", "Audiobooks", "reading"}), 6)


def test_stemming_and_ngrams_work_on_the_filtered_sequence() -> None:
    source = "The cats were running and the dogs ran."
    # filtered: The cats running dogs ran
    assert word_bag(source, stem=True) == frozenset({"the", "cat", "run", "dog", "ran"})
    assert word_bag(source, ngram=2) == frozenset({"The cats", "cats running", "running dogs", "dogs ran"})
    assert word_bag(source, stem=True, ngram=3) == frozenset({"the cat run", "cat run dog", "run dog ran"})
    assert word_bag("one", ngram=2) == frozenset()
    with pytest.raises(ValueError):
        word_bag(source, ngram=0)
