"""ExpressionPipe: the value of one template expression."""

from __future__ import annotations

from typing import Any

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult

__all__ = ["ExpressionParams", "ExpressionPipe"]


class ExpressionParams(ParamsModel):
    expression: Any
    """Usually a template: ``"{{ pipe_result('fetch') | length }}"``. ``fail('why')`` inside it
    fails the pipe with that message."""


class ExpressionPipe(Pipe[ExpressionParams]):
    """Succeeds with ``data.value`` set to the rendered ``expression``."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.params.expression})
