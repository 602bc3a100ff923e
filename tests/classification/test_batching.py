"""Batched inference: ClassifyPipes asking one model at the same time share one call, and
each still gets exactly the prediction it would get alone."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.classification.support import config, held_out_tickets, queue_model, run_config

from open_ticket_ai.classification import ClassifierService
from open_ticket_ai.classification.backends import Classifier, Prediction, SklearnClassifier
from open_ticket_ai.classification.batching import Batcher, batcher_for
from open_ticket_ai.core.pipes.result import PipeResult

HERE = __name__


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return queue_model().save(tmp_path_factory.mktemp("models") / "queues.otai")


class CountingClassifier:
    """Answers with the text's length as its label; notes every call's batch, and refuses
    the text ``"poison"`` (its whole batch raises)."""

    calls: list[int] = []
    threads: set[int] = set()

    @property
    def labels(self) -> Sequence[str]:
        return ("short", "long")

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        type(self).calls.append(len(texts))
        type(self).threads.add(threading.get_ident())
        if "poison" in texts:
            raise ValueError("this model cannot read 'poison'")
        return [Prediction(str(len(t)), 0.9, ((str(len(t)), 0.9),)) for t in texts]


class CountingService(ClassifierService):
    def build_classifier(self) -> Classifier:
        return CountingClassifier()


@pytest.fixture(autouse=True)
def _fresh() -> None:
    CountingClassifier.calls.clear()
    CountingClassifier.threads.clear()


def each(texts: list[str], *, concurrency: int, model: str) -> str:
    """A ClassifyPipe run once per text, ``concurrency`` at a time."""
    return config(
        f"""
        - id: each
          for_each: {json.dumps(texts)}
          concurrency: {concurrency}
          use: ClassifyPipe
          params: {{text: "{{{{ item }}}}", model: {json.dumps(model)}, threshold: 0.5}}
        """,
        top=f'services: [{{id: counting, use: "{HERE}:CountingService", params: {{path: x}}}}]\n'
        "plugins: [open_ticket_ai.classification]\n",
    )


async def route(texts: list[str], *, concurrency: int, model: str) -> PipeResult:
    """The for_each step's result."""
    _, run = await run_config(each(texts, concurrency=concurrency, model=model))
    return run.results["each"]


async def test_concurrent_items_share_calls_to_the_model() -> None:
    texts = [f"ticket {'x' * i}" for i in range(40)]
    result = await route(texts, concurrency=8, model="counting")
    assert result.succeeded, result.message
    assert sum(CountingClassifier.calls) == 40
    assert len(CountingClassifier.calls) < 40 / 2  # batches, not one call per text
    assert max(CountingClassifier.calls) > 1
    labels = [item["data"]["label"] for item in result.data["items"]]
    assert labels == [str(len(text)) for text in texts]  # each item its own answer
    assert threading.get_ident() not in CountingClassifier.threads


async def test_one_at_a_time_items_call_the_model_once_each() -> None:
    texts = ["a", "bb", "ccc"]
    result = await route(texts, concurrency=1, model="counting")
    assert result.succeeded
    assert CountingClassifier.calls == [1, 1, 1]


async def test_a_text_the_model_refuses_fails_its_item_alone() -> None:
    texts = ["fine", "poison", "also fine", "ok"]
    result = await route(texts, concurrency=4, model="counting")
    assert result.failed
    statuses = [item["status"] for item in result.data["items"]]
    assert statuses == ["succeeded", "failed", "succeeded", "succeeded"]
    assert "this model cannot read 'poison'" in result.message
    assert CountingClassifier.calls[0] == 4  # tried as one batch first, then each alone


async def test_batched_predictions_equal_one_at_a_time_with_scikit_learn(model_file: Path) -> None:
    texts = [t.text for t in held_out_tickets()[:60]]
    classifier = SklearnClassifier.from_file(model_file)
    alone = [classifier.predict([text])[0] for text in texts]
    batcher = Batcher(classifier)
    together = await asyncio.gather(*(batcher.predict(text) for text in texts))
    assert together == alone  # labels, confidences and rankings, exactly
    assert batcher.batches < len(texts)


async def test_a_routing_pass_gives_the_same_results_batched_or_not(model_file: Path) -> None:
    texts = [t.text for t in held_out_tickets()[:30]]
    one = await route(texts, concurrency=1, model=str(model_file))
    many = await route(texts, concurrency=10, model=str(model_file))
    assert one.succeeded
    assert many.succeeded
    assert [i["data"] for i in one.data["items"]] == [i["data"] for i in many.data["items"]]
    assert {i["data"]["label"] for i in one.data["items"]} > {one.data["items"][0]["data"]["label"]}


async def test_a_cancelled_request_leaves_the_others_their_answers() -> None:
    batcher = Batcher(CountingClassifier())
    first = asyncio.ensure_future(batcher.predict("one"))
    second = asyncio.ensure_future(batcher.predict("two!"))
    first.cancel()
    assert (await second).label == "4"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert CountingClassifier.calls == [1]  # the cancelled text was not sent


async def test_each_loop_has_its_own_batcher() -> None:
    classifier = CountingClassifier()
    here = batcher_for(classifier)
    assert batcher_for(classifier) is here

    def elsewhere() -> Batcher:
        async def make() -> Batcher:
            return batcher_for(classifier)

        return asyncio.run(make())

    other = await asyncio.to_thread(elsewhere)
    assert other is not here
    assert other.loop is not here.loop


async def test_a_lone_text_the_model_refuses_is_not_sent_twice() -> None:
    result = await route(["poison"], concurrency=1, model="counting")
    assert result.failed
    assert "this model cannot read 'poison'" in result.message
    assert CountingClassifier.calls == [1]
