"""The base every configurable component shares: a pydantic ``Params`` model and a kind."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict

__all__ = ["Component", "NoParams", "ParamsModel"]


class ParamsModel(BaseModel):
    """Base for a component's ``Params``: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(ParamsModel):
    """The params of a component that takes none."""


ParamsT = TypeVar("ParamsT", bound=BaseModel)


class Component(Generic[ParamsT]):
    """A thing a config builds with ``use:`` and ``params:``.

    ``Params`` is taken from the generic argument (``class MyPipe(Pipe[MyParams])``) unless the
    class body sets it; it defaults to :class:`NoParams`.
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    kind: ClassVar[str] = "component"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is None:
                continue
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    cls.Params = arg
                    return

    def __init__(self, params: ParamsT) -> None:
        self.params: ParamsT = params

    def warnings(self) -> list[tuple[str, str]]:
        """What may fail or idle at run time, found at load: ``(param, message)`` pairs that
        ``otai validate`` prints as warnings (a model file not trained yet, a date that has
        passed). The default finds none."""
        return []
