"""A worker's states and the one table of the changes allowed between them.

supervisord keeps its ProcessStates in one place and refuses an illegal change; so do we. Only
`Child.move_to` changes a state, and it checks this table first.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    STARTING = "STARTING"  # process started, not yet ready (loading)
    RUNNING = "RUNNING"  # said ready; requests are delivered
    STOPPING = "STOPPING"  # asked to stop; terminate and kill follow on timeouts
    EXITED = "EXITED"  # down on purpose (stopped, or an exit its policy does not restart)
    BACKOFF = "BACKOFF"  # crashed; waiting before the next start
    FATAL = "FATAL"  # crashed too often, or cannot start; stays down until restart


# A process exists exactly in these states.
LIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})

TRANSITIONS: dict[State, frozenset[State]] = {
    # start; or the start itself failed (the OS refused to spawn) and counts as a crash
    State.EXITED: frozenset({State.STARTING, State.BACKOFF, State.FATAL}),
    State.BACKOFF: frozenset({State.STARTING, State.BACKOFF, State.FATAL, State.EXITED}),
    State.FATAL: frozenset({State.STARTING, State.BACKOFF, State.FATAL}),
    # ready; asked to stop; or the process ended on its own (crash, or an exit its policy keeps)
    State.STARTING: frozenset({State.RUNNING, State.STOPPING, State.BACKOFF, State.FATAL,
                               State.EXITED}),
    State.RUNNING: frozenset({State.STOPPING, State.BACKOFF, State.FATAL, State.EXITED}),
    # whatever the exit code, an exit we asked for is not a crash
    State.STOPPING: frozenset({State.EXITED}),
}


class IllegalTransition(RuntimeError):
    """A bug in the supervisor: the state table does not allow this change."""


def check_transition(worker: str, old: State, new: State) -> None:
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old]))
        raise IllegalTransition(f"{worker}: {old.value} -> {new.value} is not allowed "
                                f"(from {old.value}: {allowed})")
