"""An example trigger plugin: fires at every whole multiple of `seconds` of wall-clock time."""

from open_ticket_ai import ParamsModel, TimeTrigger


class EveryParams(ParamsModel):
    seconds: float


class WallClockTrigger(TimeTrigger[EveryParams]):
    """Fires at 10:00:00, 10:00:30, 10:01:00, ... for `seconds: 30`."""

    clock = "wall"

    def next_fire_after(self, after: float, start: float) -> float:
        step = self.params.seconds
        return (after // step + 1) * step
