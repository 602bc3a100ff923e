"""ClassifyPipe from YAML, with a ClassifierService declared under ``services:``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.classification.support import config, queue_model, run_config

from open_ticket_ai import ComponentError, ConfigError, build, parse_config
from open_ticket_ai.classification import (
    Classifier,
    ClassifierService,
    Prediction,
    train,
)
from open_ticket_ai.runtime.orchestrator import Orchestrator

HERE = __name__
PRINTER = "Der Drucker funktioniert nicht, bitte helfen. The printer shows an error."
VAGUE = "Hello, could someone call me back about my request?"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return queue_model().save(tmp_path_factory.mktemp("models") / "queues.joblib")


def service_top(path: Path, extra: str = "") -> str:
    return f"""
        plugins: [open_ticket_ai.classification]
        services:
          - id: queues
            use: ClassifierService
            params: {{path: "{path}"{extra}}}
        """


async def test_classify_with_a_service_and_a_label_map(model_file: Path) -> None:
    text = config(
        f"""
        - id: ticket
          use: ExpressionPipe
          params: {{expression: "{PRINTER}"}}
        - id: classify
          use: ClassifyPipe
          params:
            text: "{{{{ pipe_result('ticket') }}}}"
            model: queues
            threshold: 0.5
            fallback: Triage
            label_map: {{IT Support: 1st Level IT, Billing: Accounting}}
        - id: route
          use: ExpressionPipe
          params: {{expression: "{{{{ pipe_result('classify', 'value') }}}}"}}
        """,
        top=service_top(model_file),
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    data = run.results["classify"].data
    assert data["label"] == "IT Support"
    assert data["value"] == "1st Level IT"
    assert data["low_confidence"] is False
    assert 0.5 <= data["confidence"] <= 1
    assert next(entry["label"] for entry in data["top"]) == "IT Support"
    assert len(data["top"]) == 3
    assert all(set(entry) == {"label", "score"} for entry in data["top"])
    assert run.results["classify"].message.startswith("'IT Support' (")
    assert run.results["classify"].message.endswith("-> '1st Level IT'")
    assert run.results["route"].data == {"value": "1st Level IT"}


async def test_below_the_threshold_the_fallback_is_the_value(model_file: Path) -> None:
    text = config(
        f"""
        - id: unsure
          use: ClassifyPipe
          params: {{text: "{VAGUE}", model: queues, threshold: 0.99, fallback: Triage}}
        - id: no_fallback
          use: ClassifyPipe
          params: {{text: "{VAGUE}", model: queues, threshold: 0.99, top_k: 10}}
        - id: unmapped
          use: ClassifyPipe
          params: {{text: "{PRINTER}", model: queues, label_map: {{Sales: Vertrieb}}}}
        """,
        top=service_top(model_file),
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    unsure = run.results["unsure"]
    assert unsure.data["low_confidence"] is True
    assert unsure.data["value"] == "Triage"
    assert unsure.data["confidence"] < 0.99
    assert unsure.data["label"] in {"IT Support", "Billing", "Sales", "HR"}
    assert unsure.message.startswith(f"low confidence: best guess {unsure.data['label']!r} is ")
    assert unsure.message.endswith("% sure, below the threshold 99%; using 'Triage'")
    assert unsure.data["threshold"] == 0.99
    sure = min(round(unsure.data["confidence"] * 100), 98)
    assert unsure.data["explanation"] == (
        f"Triage (best guess {unsure.data['label']}, {sure}% sure, below the threshold 99%)"
    )
    assert run.results["no_fallback"].data["explanation"].startswith("none (best guess ")
    assert run.results["no_fallback"].data["value"] is None
    assert len(run.results["no_fallback"].data["top"]) == 4  # every label there is
    unmapped = run.results["unmapped"].data
    assert (unmapped["value"], unmapped["low_confidence"]) == ("IT Support", False)


async def test_the_model_may_be_a_path(model_file: Path, tmp_path: Path) -> None:
    def step(path: Path) -> str:
        return f'- id: c\n  use: ClassifyPipe\n  params: {{text: "{PRINTER}", model: "{path}"}}\n'

    top = "plugins: [open_ticket_ai.classification]\n"
    _, run = await run_config(config(step(model_file), top=top))
    assert run.results["c"].data["label"] == "IT Support"

    # a model retrained at the same path is picked up by the next run
    retrained = tmp_path / "retrained.joblib"
    train([("printer broken", "Hardware")] * 2 + [("invoice wrong", "Money")] * 2, folds=0).save(
        retrained
    )
    _, run = await run_config(config(step(retrained), top=top))
    assert run.results["c"].data["label"] == "Hardware"
    train([("printer broken", "Drucker")] * 2 + [("invoice wrong", "Geld")] * 2, folds=0).save(
        retrained
    )
    _, run = await run_config(config(step(retrained), top=top))
    assert run.results["c"].data["label"] == "Drucker"


async def test_an_unknown_model_fails_the_step_naming_services_and_path(
    model_file: Path, tmp_path: Path
) -> None:
    # A bare name is a service id: a typo is refused at load ...
    typo = config(
        """
        - id: c
          use: ClassifyPipe
          params: {text: hi, model: quues}
        """,
        top=service_top(model_file),
    )
    with pytest.raises(
        ConfigError, match=r"params\.model: no service 'quues' \(services: queues\)"
    ):
        build(parse_config(typo, "config.yml"))
    # ... a path may be made later (a warning at load), and fails the step if it is not.
    missing = tmp_path / "models" / "missing.otai"
    text = config(
        f"""
        - id: c
          use: ClassifyPipe
          params: {{text: hi, model: "{missing}"}}
        """,
        top=service_top(model_file),
    )
    result, run = await run_config(text)
    assert result.failed
    message = run.results["c"].message
    assert "orchestrator.runners[0].run.steps[0].params.model: no service" in message
    assert "(services: queues)" in message
    assert f"no model file or transformers model directory at {str(missing)!r}" in message


async def test_a_service_of_another_kind_is_refused(tmp_path: Path) -> None:
    text = config(
        """
        - id: c
          use: ClassifyPipe
          params: {text: hi, model: db}
        """,
        top=f"""
        plugins: [open_ticket_ai.classification]
        services:
          - id: db
            use: "open_ticket_ai.tickets.adapters.sqlite:SqliteTicketSystem"
            params: {{path: "{tmp_path / "db.sqlite"}"}}
        """,
    )
    _, run = await run_config(text)
    assert (
        "service 'db' is a SqliteTicketSystem, not a ClassifierService" in run.results["c"].message
    )


@pytest.mark.parametrize(
    ("params", "where", "says"),
    [
        ("{path: a.joblib, model: bert}", "services[0].params", "exactly one of 'path'"),
        ("{}", "services[0].params", "exactly one of 'path'"),
        ("{model: bert, backend: sklearn}", "services[0].params", "use 'path', not 'model'"),
        ("{path: a.joblib, backend: torch}", "services[0].params.backend", "sklearn"),
    ],
)
def test_bad_service_params_are_config_errors(params: str, where: str, says: str) -> None:
    text = config(
        "- {id: c, use: ClassifyPipe, params: {text: hi, model: m}}",
        top=f"plugins: [open_ticket_ai.classification]\nservices:\n"
        f"  - {{id: m, use: ClassifierService, params: {params}}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    problems = {p.path: p.message for p in caught.value.problems}
    assert says in problems[where]


def test_bad_pipe_params_are_config_errors() -> None:
    text = config(
        "- {id: c, use: ClassifyPipe, params: {text: hi, model: m, threshold: 1.5, top_k: 0}}",
        top="plugins: [open_ticket_ai.classification]\n",
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    paths = {p.path for p in caught.value.problems}
    step = "orchestrator.runners[0].run.steps[0].params"
    assert {f"{step}.threshold", f"{step}.top_k"} <= paths


async def test_a_missing_model_file_stops_the_start(tmp_path: Path) -> None:
    text = config(
        "- {id: c, use: ClassifyPipe, params: {text: hi, model: queues}}",
        top=service_top(tmp_path / "absent.joblib"),
    )
    orchestrator = Orchestrator(build(parse_config(text, "config.yml")))
    with pytest.raises(ComponentError, match=r"service 'queues' failed to open: .*no model file"):
        await orchestrator.run()


async def test_the_service_loads_at_open_or_on_first_use(model_file: Path) -> None:
    service = ClassifierService(ClassifierService.Params(path=str(model_file)), id="q")
    assert not service.loaded
    await service.open()
    assert service.loaded
    assert service.describe() == {"id": "q", "backend": "sklearn", "source": str(model_file)}
    await service.close()
    assert not service.loaded
    lazy = ClassifierService(ClassifierService.Params(path=str(model_file)), id="q")
    assert (await asyncio.to_thread(lazy.predict, [PRINTER]))[0].label == "IT Support"
    assert lazy.loaded


class ThreadRecorder:
    """A Classifier that notes the thread each prediction runs on."""

    threads: list[int] = []

    @property
    def labels(self) -> Sequence[str]:
        return ("a",)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        type(self).threads.append(threading.get_ident())
        return [Prediction("a", 1.0, (("a", 1.0),)) for _ in texts]


class RecordingService(ClassifierService):
    """Serves a ThreadRecorder instead of reading a model."""

    def build_classifier(self) -> Classifier:
        return ThreadRecorder()


async def test_inference_runs_in_a_worker_thread() -> None:
    # The pipe is async (it batches); the model itself is called in a worker thread.
    ThreadRecorder.threads.clear()
    text = config(
        "- {id: c, use: ClassifyPipe, params: {text: hi, model: rec}}",
        top=f'services: [{{id: rec, use: "{HERE}:RecordingService", params: {{path: x}}}}]\n'
        "plugins: [open_ticket_ai.classification]\n",
    )
    _, run = await run_config(text)
    assert run.results["c"].data["value"] == "a"
    assert ThreadRecorder.threads
    assert threading.get_ident() not in ThreadRecorder.threads
