"""CompositePipe: runs its steps in order."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from open_ticket_ai import Pipe, PipeContext, PipeResult

__all__ = ["CompositeParams", "CompositePipe"]


class CompositeParams(BaseModel):
    """Any values; the steps read them as ``parent``."""

    model_config = ConfigDict(extra="allow", frozen=True)


class CompositePipe(Pipe[CompositeParams]):
    """Runs ``steps`` in order. The first failed step fails the composite with the step's id
    and message; after it, only steps whose ``if:`` asks about outcomes (a fallback calling
    ``has_failed('step')`` or ``has_succeeded``) are considered; the rest are skipped."""

    accepts_steps: ClassVar[bool] = True

    async def process(self, ctx: PipeContext) -> PipeResult:
        failed: tuple[str, str] | None = None
        for step in ctx.steps:
            if failed is not None and not step.asks_about_outcomes:
                ctx.skip_step(step, f"skipped: step {failed[0]!r} failed")
                continue
            result = await ctx.run_step(step)
            if failed is None and result.failed:
                failed = (step.id, result.message)
        if failed is not None:
            return PipeResult.failure(f"step {failed[0]!r} failed: {failed[1]}")
        return PipeResult.success()
