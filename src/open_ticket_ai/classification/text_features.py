"""Exact, faster text features for the scikit-learn pipelines ``otai train`` writes.

scikit-learn's ``TfidfVectorizer`` counts a text's n-grams in a Python loop, a few dict
operations per n-gram: for a ticket's few hundred character n-grams that loop is most of a
prediction's time. :func:`fast_predict_proba` counts the same n-grams in C (``Counter`` over
``dict.get``), remembers the character n-grams of each word it has seen (``char_wb`` n-grams
never cross a word's edge, so a text's counts are its words' counts added up), and gives the
counts to the vectorizer's own tf-idf weighting and then to the pipeline's own estimator. The
feature matrices, and so the probabilities, are the very ones the pipeline computes itself
(tested bit for bit, and checked against the installed scikit-learn whenever a model is
loaded); it only gets there in about half the time.

A pipeline of another shape, or a vectorizer with an option this module does not reproduce
(a custom tokenizer or preprocessor, stop words, accents stripped, binary counts, another
analyzer), gets None: it is predicted by its own ``predict_proba``, as before.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain, islice
from typing import Any, cast

__all__ = ["PROBES", "WORD_CACHE", "fast_predict_proba"]

WORD_CACHE = 20_000
"""Words whose character n-grams a vectorizer remembers (3.5 to 6 MB for 20,000 words,
measured with tracemalloc); when full, it forgets them all and starts again."""

Counts = Callable[[Sequence[str]], tuple[list[int], list[int], list[int]]]
"""Texts -> the CSR parts (column indices, counts, row pointers) of their count matrix."""


def fast_predict_proba(pipeline: Any) -> Callable[[Sequence[str]], Any] | None:
    """``pipeline.predict_proba`` for a list of strings, computed as described in the module;
    None when the pipeline is not a [TfidfVectorizer, or a FeatureUnion of them] -> estimator
    pipeline this module reproduces exactly."""
    try:
        import numpy as np
        import scipy.sparse  # type: ignore[import-untyped]
        from sklearn.pipeline import FeatureUnion, Pipeline  # type: ignore[import-untyped]
    except ImportError:
        return None
    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        return None
    (_, features), (_, estimator) = pipeline.steps
    if not hasattr(estimator, "predict_proba"):
        return None
    if type(features) is FeatureUnion:
        if features.transformer_weights is not None:
            return None
        fitted = [transformer for _, transformer in features.transformer_list]
    else:
        fitted = [features]
    parts = [_vectorizer(transformer) for transformer in fitted]
    if not parts or any(part is None for part in parts):
        return None
    vectorizers = [part for part in parts if part is not None]

    def predict_proba(texts: Sequence[str]) -> Any:
        if not all(type(text) is str for text in texts):
            return pipeline.predict_proba(texts)
        matrices = [weigh(texts) for weigh in vectorizers]
        if len(matrices) == 1:
            return estimator.predict_proba(matrices[0])
        return estimator.predict_proba(scipy.sparse.hstack(matrices).tocsr())

    # The installed scikit-learn is the judge: should its analyzers ever count otherwise than
    # this module does, the pipeline keeps its own predict_proba.
    probe = _probe(fitted)
    try:
        same = np.array_equal(predict_proba(probe), pipeline.predict_proba(probe))
    except Exception:
        return None
    return predict_proba if same else None


PROBES = (
    "",
    "a I x",
    "Die Überweisung vom 03.05. fehlt: bitte RE-2024-118 prüfen!",
    "STRASSE Straße ÄÖÜ İstanbul ǅ  tabs\tnew\r\nlines\x0bnbsp\u00a0em\u2003sep\x1cend",
    "VPN down, VPN DOWN... printer (3rd floor) jammed?? 漢字 🙂",
)
"""Texts each fast pipeline must predict exactly as its own predict_proba does when it is
made, besides texts of its vocabulary's own terms: a check of the installed scikit-learn."""


def _probe(vectorizers: list[Any]) -> list[str]:
    """:data:`PROBES`, and texts of about 200 terms of each vectorizer's vocabulary (as they
    are, and in capitals), so that the check counts n-grams the model knows."""
    texts = list(PROBES)
    for vectorizer in vectorizers:
        vocabulary = vectorizer.vocabulary_
        terms = list(islice(vocabulary, 0, None, max(1, len(vocabulary) // 200)))
        texts += [" ".join(terms), "".join(terms).upper(), " ".join(terms[::-3])]
    return texts


def _vectorizer(vectorizer: Any) -> Callable[[Sequence[str]], Any] | None:
    """Texts -> the tf-idf matrix ``vectorizer.transform`` gives them, or None when the
    vectorizer has an option this module does not reproduce."""
    import numpy as np
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

    if type(vectorizer) is not TfidfVectorizer:
        return None
    options = vectorizer.get_params()
    plain = (
        options["input"] == "content"
        and options["preprocessor"] is None
        and options["tokenizer"] is None
        and options["strip_accents"] is None
        and options["stop_words"] is None
        and not options["binary"]
    )
    vocabulary = getattr(vectorizer, "vocabulary_", None)
    tfidf: Any = getattr(vectorizer, "_tfidf", None)
    if not plain or not isinstance(vocabulary, dict) or not hasattr(tfidf, "transform"):
        return None
    low, high = options["ngram_range"]
    if options["analyzer"] == "char_wb":
        counts = _char_wb_counts(vocabulary, low, high, lowercase=options["lowercase"])
    elif options["analyzer"] == "word" and options["token_pattern"] is not None:
        tokens = re.compile(options["token_pattern"]).findall
        counts = _word_counts(vocabulary, tokens, low, high, lowercase=options["lowercase"])
    else:
        return None
    width = len(vocabulary)
    dtype = options["dtype"]

    def weigh(texts: Sequence[str]) -> Any:
        columns, values, rows = counts(texts)
        matrix = scipy.sparse.csr_matrix(
            (
                np.asarray(values, dtype=np.intc),
                np.asarray(columns, dtype=np.int32),
                np.asarray(rows, dtype=np.int32),
            ),
            shape=(len(rows) - 1, width),
            dtype=dtype,
        )
        matrix.sort_indices()
        return tfidf.transform(matrix, copy=False)

    return weigh


def _word_counts(
    vocabulary: dict[str, int],
    tokens: Callable[[str], list[str]],
    low: int,
    high: int,
    *,
    lowercase: bool,
) -> Counts:
    """Counts of the analyzer ``word``: the tokens, then their n-grams joined by one space."""
    column = vocabulary.get

    def counts(texts: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
        columns: list[int] = []
        values: list[int] = []
        rows = [0]
        for text in texts:
            words = tokens(text.lower() if lowercase else text)
            grams = list(words) if low == 1 else []
            for n in range(max(low, 2), min(high, len(words)) + 1):
                grams += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
            found = Counter(map(column, grams))  # in C, unlike a loop that skips the misses
            del found[None]  # the n-grams outside the vocabulary (a Counter never raises here)
            columns += cast("Counter[int]", found).keys()
            values += found.values()
            rows.append(len(columns))
        return columns, values, rows

    return counts


def _char_wb_counts(vocabulary: dict[str, int], low: int, high: int, *, lowercase: bool) -> Counts:
    """Counts of the analyzer ``char_wb``: each whitespace-separated word padded with a space
    on both sides, its n-grams of ``low`` to ``high`` characters (a padded word shorter than
    n counted once, whole, and no longer n-grams of it), as scikit-learn makes them."""
    column = vocabulary.get
    seen: dict[str, tuple[int, ...]] = {}
    lock = threading.Lock()

    def word_columns(word: str) -> tuple[int, ...]:
        found = seen.get(word)
        if found is None:
            padded = f" {word} "
            size = len(padded)
            grams: list[str] = []
            for n in range(low, high + 1):
                if size <= n:
                    grams.append(padded)
                    break
                grams += [padded[i : i + n] for i in range(size - n + 1)]
            found = tuple([index for index in map(column, grams) if index is not None])
            with lock:
                if len(seen) >= WORD_CACHE:
                    seen.clear()
                seen[word] = found
        return found

    def counts(texts: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
        columns: list[int] = []
        values: list[int] = []
        rows = [0]
        for text in texts:
            words = (text.lower() if lowercase else text).split()
            found = Counter(chain.from_iterable(map(word_columns, words)))
            columns += found.keys()
            values += found.values()
            rows.append(len(columns))
        return columns, values, rows

    return counts
