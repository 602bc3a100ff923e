"""Built-in pipes."""

from open_ticket_ai.base.pipes.composite_pipe import CompositePipe
from open_ticket_ai.base.pipes.expression_pipe import ExpressionPipe
from open_ticket_ai.base.pipes.http_request_pipe import HttpRequestPipe

__all__ = ["CompositePipe", "ExpressionPipe", "HttpRequestPipe"]
