"""An example plugin: a pipe that greets someone."""

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult


class GreetingParams(ParamsModel):
    name: str
    punctuation: str = "!"


class GreetingPipe(Pipe[GreetingParams]):
    """Greets someone; fails for an empty name."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        if not self.params.name.strip():
            return PipeResult.failure("nobody to greet")
        return PipeResult.success({"value": f"Hello, {self.params.name}{self.params.punctuation}"})
