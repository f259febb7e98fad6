"""Work on a few threads with bounded memory: results in order, never more than a few waiting.

:func:`in_order_concurrently` maps work over a list, ``workers`` at a time, and yields the
results in the list's order. :class:`BoundedPool` takes calls one at a time (a consumer that
produces them as it goes) and hands back each call's result, in the order of the calls, once
it is done, holding at most ``workers`` calls that wait.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Generic, ParamSpec, TypeVar

Item = TypeVar("Item")
Done = TypeVar("Done")
Args = ParamSpec("Args")


def in_order_concurrently(
    work: Callable[[Item], Done], items: Sequence[Item], workers: int
) -> Generator[Done, None, None]:
    """``work(item)`` for each item, ``workers`` at a time, yielded in the items' order.

    At most ``workers`` results wait ahead of the consumer, so memory stays bounded however
    long the list. Closing the generator cancels what has not started.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers))
    pending: deque[concurrent.futures.Future[Done]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class BoundedPool(Generic[Done]):
    """Calls run ``workers`` at a time; their results come back in the calls' order.

    At most ``workers`` calls wait, which bounds what their arguments hold in memory: a call
    beyond that waits for the oldest. Leaving the block waits for every call; an error of one
    is raised by the next :meth:`submit` or :meth:`drain`.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
        self._pending: deque[concurrent.futures.Future[Done]] = deque()

    def __enter__(self) -> BoundedPool[Done]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for every call started to end; results not taken are dropped."""
        self._pool.shutdown(wait=True)

    def submit(
        self, work: Callable[Args, Done], *args: Args.args, **kwargs: Args.kwargs
    ) -> list[Done]:
        """Start ``work(*args, **kwargs)``; the results of the oldest calls finished meanwhile."""
        self._pending.append(self._pool.submit(work, *args, **kwargs))
        done = []
        while self._pending and (len(self._pending) > self.workers or self._pending[0].done()):
            done.append(self._pending.popleft().result())
        return done

    def drain(self) -> list[Done]:
        """Wait for every call; their results."""
        done = []
        while self._pending:
            done.append(self._pending.popleft().result())
        return done
