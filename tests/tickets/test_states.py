"""The pure state machine: its table, role checks and audit replay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tickets.errors import Forbidden, IllegalTransition, InvalidInput
from tickets.states import (
    OPEN_STATES,
    STATE_LABELS,
    TERMINAL_STATES,
    TRANSITIONS,
    Role,
    State,
    allowed_actions,
    check,
    replay,
)


def test_every_state_has_a_chinese_label_and_terminal_states_are_dead_ends() -> None:
    assert set(STATE_LABELS) == set(State)
    assert not any(s in t.sources for t in TRANSITIONS.values() for s in TERMINAL_STATES)


def test_every_open_state_can_still_end() -> None:
    graph: dict[State | None, set[State]] = {}
    for t in TRANSITIONS.values():
        for s in t.sources:
            graph.setdefault(s, set()).add(t.leads_to(s))
    for start in OPEN_STATES:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert State.CLOSED in seen, start


def test_checks_give_typed_errors_with_stable_codes() -> None:
    assert check(State.REVIEWED, "dispatch", "dispatcher").target == State.DISPATCHED
    with pytest.raises(IllegalTransition) as err:
        check(State.ACCEPTED, "sign", "handler", department="zjj", lead_department="zjj")
    assert err.value.code == "ticket.illegal_transition" and "受理" in err.value.message
    with pytest.raises(Forbidden) as err:
        check(State.REPLIED, "verify", "handler")
    assert err.value.code == "ticket.role_forbidden" and "承办人" in err.value.message
    with pytest.raises(Forbidden) as err:
        check(State.DISPATCHED, "sign", "handler", department="hbj", lead_department="zjj")
    assert err.value.code == "ticket.not_own_department"
    with pytest.raises(InvalidInput):
        check(State.DISPATCHED, "teleport", "admin")


def test_allowed_actions_per_role() -> None:
    assert allowed_actions(State.ACCEPTED, "agent") == ["close_instant", "withdraw"]
    assert allowed_actions(State.SIGNED, "handler", department="zjj", lead_department="zjj") == [
        "return",
        "start",
        "request_extension",
        "reply",
    ]
    assert allowed_actions(State.SIGNED, "handler", department="hbj", lead_department="zjj") == []
    assert allowed_actions(State.CLOSED, "admin") == []


def test_replay_rejects_a_trail_the_machine_cannot_produce() -> None:
    good = [
        ("create", None, "accepted"),
        ("review", "accepted", "reviewed"),
        ("dispatch", "reviewed", "dispatched"),
    ]
    assert replay(good) == State.DISPATCHED
    assert replay([]) is None
    for bad in (
        [("review", None, "reviewed")],  # no creation
        [*good[:2], ("sign", "reviewed", "signed")],  # skipped dispatch
        [*good, ("sign", "dispatched", "closed")],  # wrong target
        [*good, ("sign", "accepted", "signed")],  # does not start where the last ended
    ):
        with pytest.raises(IllegalTransition) as err:
            replay(bad)
        assert err.value.code == "ticket.audit_inconsistent"


class LoopMachine(RuleBasedStateMachine):
    """Random actions by random roles: the machine never leaves its states and its trail always replays."""

    def __init__(self) -> None:
        super().__init__()
        self.state: State | None = None
        self.trail: list[tuple[str, str | None, str]] = []

    @rule(
        action=st.sampled_from(sorted(TRANSITIONS)),
        role=st.sampled_from(list(Role)),
        own=st.booleans(),
    )
    def act(self, action: str, role: Role, own: bool) -> None:
        try:
            t = check(
                self.state, action, role, department="zjj" if own else "hbj", lead_department="zjj"
            )
        except (IllegalTransition, Forbidden):
            return
        assert self.state not in TERMINAL_STATES
        new = t.leads_to(self.state)
        self.trail.append((action, None if self.state is None else self.state.value, new.value))
        self.state = new

    @invariant()
    def replays_to_current_state(self) -> None:
        assert replay(self.trail) == self.state
        assert self.state is None or self.state in State


TestLoopMachine = LoopMachine.TestCase
TestLoopMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


@given(st.lists(st.sampled_from(sorted(TRANSITIONS)), max_size=20))
def test_random_trails_replay_or_are_rejected(actions: list[str]) -> None:
    """A trail built only from legal steps replays; the first illegal step is always detected."""
    state: State | None = None
    trail: list[tuple[str, str | None, str]] = []
    for action in actions:
        t = TRANSITIONS[action]
        target = t.target or state or State.ACCEPTED  # any target will do for an illegal step
        step = (action, None if state is None else state.value, target.value)
        if state in t.sources:
            trail.append(step)
            state = target
        else:
            with pytest.raises(IllegalTransition):
                replay([*trail, step])
    assert replay(trail) == state
