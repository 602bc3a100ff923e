"""The fast text features give exactly the probabilities of the pipeline's own predict_proba,
for the pipelines ``otai train`` writes and for other options the module reproduces; every
other pipeline is left to scikit-learn."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import FeatureUnion, Pipeline
from tests.classification.support import held_out_tickets, queue_model, training_tickets

from open_ticket_ai.classification import SklearnClassifier, text_features
from open_ticket_ai.classification.backends import build_sklearn_pipeline
from open_ticket_ai.classification.text_features import fast_predict_proba

AWKWARD = [
    "",
    " ",
    "a",
    "I",
    "Rechnung",
    "STRASSE Straße ÄÖÜ äöü İstanbul ǅ",
    "tabs\tand\nnew\r\nlines\x0band\x0cfeeds",
    "non\u00a0breaking\u2003em\u2028line\x1cseparators\x85next",
    "  leading and trailing   runs of   spaces  ",
    "punctuation!!! ... ??? --- (only) [brackets] {braces}",
    "numbers 1 22 333 4444 55555 2024-06-01 10:30",
    "x" * 300,
    "Die Überweisung vom 03.05. fehlt, bitte die Rechnung RE-2024-118 prüfen.",
    "VPN down VPN down VPN down vpn DOWN",
    "emoji 🙂 and CJK 漢字 and RTL שלום",
]


def _texts() -> list[str]:
    return [t.text for t in held_out_tickets()[:60]] + AWKWARD


def _fitted(features: Any, estimator: Any | None = None) -> Pipeline:
    pipeline = Pipeline([("features", features), ("model", estimator or LogisticRegression())])
    tickets = training_tickets()[:150]
    return pipeline.fit([t.text for t in tickets], [t.queue for t in tickets])


def _same(pipeline: Pipeline, texts: list[str]) -> None:
    fast = fast_predict_proba(pipeline)
    assert fast is not None, "the pipeline should have taken the fast path"
    expected = pipeline.predict_proba(texts)
    for _ in range(2):  # the second time from the words it remembered
        got = fast(texts)
        assert got.dtype == expected.dtype
        assert got.shape == expected.shape
        assert np.array_equal(got, expected)


def test_the_trained_model_gives_bit_identical_probabilities() -> None:
    _same(queue_model().pipeline, _texts())


def test_one_text_at_a_time_gives_the_same_as_a_batch() -> None:
    pipeline = queue_model().pipeline
    fast = fast_predict_proba(pipeline)
    assert fast is not None
    texts = _texts()
    batch = fast(texts)
    for index, text in enumerate(texts):
        assert np.array_equal(fast([text])[0], batch[index])
        assert np.array_equal(pipeline.predict_proba([text])[0], batch[index])


@pytest.mark.parametrize(
    "features",
    [
        pytest.param(TfidfVectorizer(), id="word-unigrams-alone"),
        pytest.param(TfidfVectorizer(ngram_range=(2, 3)), id="word-2-3-grams"),
        pytest.param(TfidfVectorizer(lowercase=False, ngram_range=(1, 3)), id="word-cased"),
        pytest.param(TfidfVectorizer(token_pattern=r"(?u)\b\w+\b"), id="word-own-pattern"),
        pytest.param(TfidfVectorizer(token_pattern=r"(\w)\w*"), id="word-pattern-with-group"),
        pytest.param(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)), id="char-wb-1-3"),
        pytest.param(TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 8)), id="char-wb-4-8"),
        pytest.param(
            TfidfVectorizer(analyzer="char_wb", lowercase=False, norm="l1", use_idf=False),
            id="char-wb-cased-l1-no-idf",
        ),
        pytest.param(
            TfidfVectorizer(analyzer="char_wb", min_df=3, max_features=500, smooth_idf=False),
            id="char-wb-pruned",
        ),
        pytest.param(
            FeatureUnion(
                [
                    ("a", TfidfVectorizer(sublinear_tf=True)),
                    ("b", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4))),
                    ("c", TfidfVectorizer(ngram_range=(1, 2), norm=None)),
                ]
            ),
            id="union-of-three",
        ),
    ],
)
def test_other_vectorizer_options_give_identical_probabilities(features: Any) -> None:
    _same(_fitted(features), _texts())


def test_another_estimator_gives_identical_probabilities() -> None:
    _same(_fitted(TfidfVectorizer(analyzer="char_wb"), MultinomialNB()), _texts())


def test_a_small_word_memory_that_fills_and_starts_again_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(text_features, "WORD_CACHE", 5)
    _same(queue_model().pipeline, _texts())


def test_threads_predicting_at_once_get_the_same_probabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(text_features, "WORD_CACHE", 50)  # clearing while others read it
    pipeline = build_sklearn_pipeline()
    tickets = training_tickets()[:120]
    pipeline.fit([t.text for t in tickets], [t.queue for t in tickets])
    fast = fast_predict_proba(pipeline)
    assert fast is not None
    texts = _texts()
    expected = pipeline.predict_proba(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fast(texts), range(16)))
    assert all(np.array_equal(result, expected) for result in results)


@pytest.mark.parametrize(
    "features",
    [
        pytest.param(TfidfVectorizer(stop_words="english"), id="stop-words"),
        pytest.param(TfidfVectorizer(strip_accents="unicode"), id="accents-stripped"),
        pytest.param(TfidfVectorizer(binary=True), id="binary"),
        pytest.param(TfidfVectorizer(analyzer="char"), id="analyzer-char"),
        pytest.param(TfidfVectorizer(tokenizer=str.split, token_pattern=None), id="tokenizer"),
        pytest.param(TfidfVectorizer(preprocessor=str.upper), id="preprocessor"),
        pytest.param(CountVectorizer(), id="counts-not-tf-idf"),
        pytest.param(
            FeatureUnion([("a", TfidfVectorizer())], transformer_weights={"a": 2.0}),
            id="weighted-union",
        ),
        pytest.param(
            FeatureUnion([("a", TfidfVectorizer()), ("b", CountVectorizer())]),
            id="union-with-another-transformer",
        ),
    ],
)
def test_options_it_does_not_reproduce_are_left_to_scikit_learn(features: Any) -> None:
    assert fast_predict_proba(_fitted(features)) is None


def test_other_shapes_are_left_to_scikit_learn() -> None:
    assert fast_predict_proba(LogisticRegression()) is None
    three = Pipeline(
        [("a", TfidfVectorizer()), ("b", TfidfVectorizer()), ("c", LogisticRegression())]
    )
    assert fast_predict_proba(three) is None
    unfitted = Pipeline([("a", TfidfVectorizer()), ("b", LogisticRegression())])
    assert fast_predict_proba(unfitted) is None


def test_a_scikit_learn_that_counts_otherwise_keeps_its_own_predict_proba(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = text_features._char_wb_counts

    def miscounting(*args: Any, **kwargs: Any) -> Any:
        counts = made(*args, **kwargs)

        def wrong(texts: Any) -> Any:
            columns, values, rows = counts(texts)
            return columns, [value + 1 for value in values], rows  # one more of each

        return wrong

    monkeypatch.setattr(text_features, "_char_wb_counts", miscounting)
    assert fast_predict_proba(queue_model().pipeline) is None
    word_only = _fitted(TfidfVectorizer())
    assert fast_predict_proba(word_only) is not None  # counted by the word analyzer: right


def test_texts_that_are_not_strings_are_left_to_scikit_learn() -> None:
    pipeline = queue_model().pipeline
    fast = fast_predict_proba(pipeline)
    assert fast is not None
    texts: list[Any] = ["Rechnung doppelt", b"VPN down"]
    assert np.array_equal(fast(texts), pipeline.predict_proba(texts))


def test_the_classifier_predicts_what_its_pipeline_says() -> None:
    model = queue_model()
    classifier = SklearnClassifier(model)
    texts = _texts()
    rows = model.pipeline.predict_proba(texts)
    for prediction, row in zip(classifier.predict(texts), rows, strict=True):
        assert prediction.confidence == float(row.max())
        assert prediction.label == model.labels[int(row.argmax())]
        assert dict(prediction.top) == {
            label: float(score) for label, score in zip(model.labels, row, strict=True)
        }
