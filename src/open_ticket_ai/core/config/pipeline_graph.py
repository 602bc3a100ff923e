"""The shape of a pipeline: its pipes in order, what has finished when each starts, and
dependency cycles. Plain loops throughout, so building a large config leaves no garbage."""

from __future__ import annotations

import itertools

from open_ticket_ai.core.config.models import PipeConfig
from open_ticket_ai.core.config.yaml_source import ConfigPath

__all__ = ["cycles", "finished_before", "walk"]


def walk(root: PipeConfig, root_path: ConfigPath) -> list[tuple[PipeConfig, ConfigPath]]:
    """Every pipe of a pipeline with its path, in document order."""
    out: list[tuple[PipeConfig, ConfigPath]] = []
    stack = [(root, root_path)]
    while stack:
        config, path = stack.pop()
        out.append((config, path))
        stack.extend(
            (step, (*path, "steps", i)) for i, step in reversed(list(enumerate(config.steps)))
        )
    return out


def finished_before(root: PipeConfig) -> dict[int, frozenset[str]]:
    """For each pipe (by object id): the ids of the steps that have finished when it starts.

    A composite finishes after its steps, so a step sees its earlier siblings, their nested
    steps, and whatever finished before its enclosing composites started."""
    seen: dict[int, frozenset[str]] = {}
    finished: list[str] = []
    # (config, entering?) pairs: entering records what has finished; leaving marks it done.
    stack: list[tuple[PipeConfig, bool]] = [(root, True)]
    while stack:
        config, entering = stack.pop()
        if entering:
            seen[id(config)] = frozenset(finished)
            stack.append((config, False))
            stack.extend((step, True) for step in reversed(config.steps))
        else:
            finished.append(config.id)
    return seen


def cycles(graph: dict[str, list[str]]) -> dict[tuple[str, str], list[str]]:
    """Each edge that lies on a cycle -> that cycle as a path (``a -> b -> a``)."""
    found: dict[tuple[str, str], list[str]] = {}
    state: dict[str, int] = {}
    for start in graph:
        if start in state:
            continue
        # Iterative depth-first search; `path` is the current chain of open nodes.
        path: list[str] = [start]
        state[start] = 1
        pending: list[list[str]] = [list(graph.get(start, []))]
        while pending:
            if not pending[-1]:
                state[path.pop()] = 2
                pending.pop()
                continue
            nxt = pending[-1].pop(0)
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                for a, b in itertools.pairwise(cycle):
                    found.setdefault((a, b), cycle)
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(list(graph.get(nxt, [])))
    return found
