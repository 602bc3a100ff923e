"""Batched inference: the texts that pipes ask one classifier about at the same time go to
the model in one vectorised call, in a worker thread.

A ``ClassifyPipe`` inside a ``for_each`` with ``concurrency: N`` asks about N texts at once;
one at a time, each would pay the model's fixed cost per call (scikit-learn's pipeline setup,
a transformers forward pass) and its own trip to a worker thread. :class:`Batcher` gathers
them instead: a request that arrives while the model is idle starts a batch at the end of the
event loop's current iteration (so that every request made in that iteration joins it, and a
lone request waits for nothing); requests that arrive while a batch runs form the next one,
which starts as soon as it ends. Each request still gets its own prediction: for scikit-learn
exactly what a call with that text alone gives (each row is computed on its own); for
transformers the same up to float rounding, as padding to the batch's longest text changes
the arithmetic a little, never the order of labels for all practical texts.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from open_ticket_ai.classification.backends import Classifier, Prediction
from open_ticket_ai.core.pipes.run import worker_threads

__all__ = ["MAX_BATCH", "Batcher", "batcher_for"]

MAX_BATCH = 64
"""Texts per call at most: beyond it, a call's memory and latency grow for little gain."""


class Batcher:
    """Predictions for one classifier on one event loop, batched (see the module)."""

    def __init__(self, classifier: Classifier, *, max_batch: int = MAX_BATCH) -> None:
        self.classifier = classifier
        self.max_batch = max_batch
        self.loop = asyncio.get_running_loop()
        self._waiting: list[tuple[str, asyncio.Future[Prediction]]] = []
        self._busy = False
        self.batches = 0
        """Calls made to the model (for tests and the curious)."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, text: str) -> Prediction:
        """The prediction for ``text``, made in a batch with the texts asked for meanwhile."""
        future: asyncio.Future[Prediction] = self.loop.create_future()
        self._waiting.append((text, future))
        if not self._busy:
            self._busy = True
            self.loop.call_soon(self._next)
        return await future

    def _next(self) -> None:
        waiting = [(t, f) for t, f in self._waiting if not f.done()]  # drop the cancelled
        batch, self._waiting = waiting[: self.max_batch], waiting[self.max_batch :]
        if not batch:
            self._busy = False
            return
        task = self.loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[Prediction]]]) -> None:
        try:
            predictions = await _in_thread(self.classifier, [text for text, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return self._next()
            # One text the model cannot take must not fail the others: each alone then.
            for text, future in batch:
                try:
                    (prediction,) = await _in_thread(self.classifier, [text])
                except Exception as exc:
                    _settle(future, exc)
                else:
                    _settle(future, prediction)
        except BaseException:  # cancelled (the loop closes): nobody waits forever
            for _, future in batch:
                future.cancel()
            self._busy = False
            raise
        else:
            if len(predictions) != len(batch):
                error = RuntimeError(
                    f"the classifier gave {len(predictions)} predictions for {len(batch)} texts"
                )
                for _, future in batch:
                    _settle(future, error)
            else:
                for (_, future), prediction in zip(batch, predictions, strict=True):
                    _settle(future, prediction)
        finally:
            self.batches += 1
        self._next()


async def _in_thread(classifier: Classifier, texts: Sequence[str]) -> list[Prediction]:
    return await asyncio.to_thread(worker_threads.run_call, classifier.predict, texts)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_batchers: weakref.WeakKeyDictionary[Any, Batcher] = weakref.WeakKeyDictionary()


def batcher_for(classifier: Classifier) -> Batcher:
    """The batcher of ``classifier`` on the running loop (one per classifier and loop)."""
    found = _batchers.get(classifier)
    if found is None or found.loop is not asyncio.get_running_loop():
        found = _batchers[classifier] = Batcher(classifier)
    return found
