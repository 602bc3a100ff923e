"""RunnerFinishedTrigger: fires its runners when another runner finishes (chaining)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, Protocol, runtime_checkable

from pydantic import Field

from open_ticket_ai import ComponentError, EventTrigger, ParamsModel, RunEnded, TriggerHost

__all__ = ["RunnerFinishedParams", "RunnerFinishedTrigger"]


class RunnerFinishedParams(ParamsModel):
    """``runner``: the id of the runner to follow; ``status``: which endings fire."""

    runner: str = Field(min_length=1)
    status: Literal["succeeded", "failed", "any"] = "succeeded"
    """``any`` includes runs that ended skipped; cancelled runs (shutdown) never fire."""


@runtime_checkable
class _KnowsRunners(Protocol):
    """A host that can name the configured runners, so a typo is reported at start."""

    @property
    def runner_ids(self) -> Collection[str] | None: ...


class RunnerFinishedTrigger(EventTrigger[RunnerFinishedParams]):
    """Fires every runner listing it when runner ``runner`` finishes with ``status``, with
    ``trigger.payload`` = ``{runner, status, message}`` of that run.

    Non-overlap holds: a runner still running when the event comes is not fired (logged as
    ``trigger.refused``), so a runner chained to itself runs once, not forever."""

    def problems(self, runner_ids: Collection[str]) -> list[tuple[str, str]]:
        if self.params.runner in runner_ids:
            return []
        known = ", ".join(sorted(runner_ids)) or "none"
        return [("runner", f"no runner {self.params.runner!r} to follow (runners: {known})")]

    async def serve(self, host: TriggerHost) -> None:
        # Hosts that name the runners (an empty answer means they cannot) catch a typo now.
        ids = host.runner_ids if isinstance(host, _KnowsRunners) else None
        if ids and self.params.runner not in ids:
            known = ", ".join(sorted(ids))
            raise ComponentError(
                f"trigger {self.id!r}: RunnerFinishedTrigger follows runner "
                f"{self.params.runner!r}, which is not configured (runners: {known})"
            )

        def on_finished(event: RunEnded) -> None:
            if event.runner != self.params.runner or event.result is None:
                return
            status = event.result.status  # a timed-out run's result is a failure
            if self.params.status != "any" and status != self.params.status:
                return
            payload = {"runner": event.runner, "status": status, "message": event.result.message}
            host.fire(payload)

        # The subscription is the whole job: no task needs to stay behind it.
        host.subscribe_run_finished(on_finished)
