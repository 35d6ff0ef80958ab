"""An asyncio event loop on simulated time: when nothing is ready, the clock jumps to the next timer.

The loop's ``time()`` is a number the loop itself moves; its selector never blocks: it polls the
real file descriptors (only the loop's own wake-up pipe here) and then advances the clock by the
timeout the loop asked to sleep. A loop with no timer and nothing ready would sleep forever: that
is a hang, and :class:`Stalled` says so at once instead. Nothing here starts a thread, so a seed
gives one order of events.
"""

from __future__ import annotations

import asyncio
import selectors


class Stalled(RuntimeError):
    """Every task waits and no timer is set: the simulated system can never move again."""


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        events = super().select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
        if timeout is None:
            raise Stalled("every task waits and no timer is set")
        assert self.loop is not None
        self.loop.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now
