"""The Pipe API: Pipe, PipeResult, PipeContext."""

from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import PipeContext, PipeSpec, RunContext, execute_pipe

__all__ = ["Pipe", "PipeContext", "PipeResult", "PipeSpec", "RunContext", "execute_pipe"]
