"""Estimated queue wait from the callers waiting, the agents and the recent handle times (平均处理时长).

The handle time is an exponentially weighted moving average of talk times, updated on every AgentComplete.
Unlike an average refreshed only when a call ends (Wazo's), it also *ages*: a call still in progress for
longer than the average counts as if it ended now, so a run of long calls raises the estimate while they
are happening, not only after they finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class HandleTimeAverage:
    """EWMA of talk time in seconds, seeded with a default (or Asterisk's own average) before any sample."""

    def __init__(self, alpha: float, initial_s: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.value = initial_s
        self.samples = 0

    def add(self, talk_s: float) -> None:
        if talk_s <= 0:
            return
        self.value = (
            talk_s if self.samples == 0 else self.value + self.alpha * (talk_s - self.value)
        )
        self.samples += 1

    def seed(self, talk_s: float) -> None:
        """Asterisk's average after a (re)connect, used only while we have no sample of our own."""
        if self.samples == 0 and talk_s > 0:
            self.value = talk_s

    def aged(self, elapsed_talks_s: Sequence[float]) -> float:
        """The average with every call in progress that already exceeds it folded in as a sample ending now."""
        value = self.value
        for elapsed in sorted(elapsed_talks_s):
            if elapsed > value:
                value += self.alpha * (elapsed - value)
        return value


@dataclass(frozen=True)
class WaitEstimate:
    """Inputs and result of one estimate; ``newest_wait_s`` is None when no agent can ever answer."""

    waiting: int
    staffed: int  # logged in and not paused
    free: int  # staffed and idle now
    handle_time_s: float
    newest_wait_s: float | None

    @property
    def callers_per_agent(self) -> float | None:
        return None if self.staffed == 0 else self.waiting / self.staffed


def estimate_wait(
    waiting: int, staffed: int, free: int, busy_elapsed_s: Sequence[float], handle_time_s: float
) -> WaitEstimate:
    """Expected wait of the last caller in line (position ``waiting``).

    Callers up to ``free`` are answered at once. Every staffed agent then releases in turn: a busy agent
    after its remaining time (handle time minus elapsed, at least a tenth of it; one busy with a call we did
    not see after half a handle time on average), a free agent one handle time after taking a caller. The
    k-th caller beyond the free agents takes the k-th release; every round after the first adds a handle time.
    """
    if waiting <= 0:
        return WaitEstimate(0, staffed, free, handle_time_s, 0.0)
    if staffed <= 0:
        return WaitEstimate(waiting, staffed, free, handle_time_s, None)
    k = waiting - free
    if k <= 0:
        return WaitEstimate(waiting, staffed, free, handle_time_s, 0.0)
    busy = staffed - free
    known = [max(handle_time_s - e, 0.1 * handle_time_s) for e in list(busy_elapsed_s)[:busy]]
    releases = sorted(known + [handle_time_s / 2] * (busy - len(known)) + [handle_time_s] * free)
    rounds, index = divmod(k - 1, staffed)
    return WaitEstimate(
        waiting, staffed, free, handle_time_s, releases[index] + rounds * handle_time_s
    )
