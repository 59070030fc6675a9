"""proxy.replypoll: the loop polls while a reply head is awaited, and only then."""

from __future__ import annotations

import asyncio

from authproxy.proxy.replypoll import ReplyPoll
from tests.support.polling import poll_until

WINDOW = 0.05


async def _until_idle(poll: ReplyPoll) -> None:
    """Let the loop run until the poll has stopped."""
    assert await poll_until(lambda: not poll.polling, within=5)


async def test_polls_while_a_reply_is_awaited_then_stops_when_it_ends() -> None:
    """Each loop pass while waiting is a poll; the end of the wait stops them."""
    poll = ReplyPoll(WINDOW)
    started = poll.begin()
    assert poll.polling
    for _ in range(5):
        await asyncio.sleep(0)
    assert poll.passes >= 4
    poll.end(started)
    await _until_idle(poll)
    passes = poll.passes
    await asyncio.sleep(0.01)
    assert (poll.polling, poll.passes, poll.waiting) == (False, passes, 0)


async def test_polling_stops_at_the_window_although_the_wait_goes_on() -> None:
    """A reply that takes longer than the window is awaited asleep after it."""
    poll = ReplyPoll(WINDOW)
    started = poll.begin()
    await asyncio.sleep(WINDOW * 3)
    assert not poll.polling
    assert poll.waiting == 1
    passes = poll.passes
    assert passes > 0
    await asyncio.sleep(0.02)
    assert poll.passes == passes
    poll.end(started)


async def test_a_late_reply_turns_polling_off_until_a_quick_one() -> None:
    """After a wait past the window no request polls; a quick reply turns it on."""
    poll = ReplyPoll(WINDOW)
    slow = poll.begin()
    await asyncio.sleep(WINDOW * 2)
    poll.end(slow)
    await _until_idle(poll)

    unpolled = poll.begin()
    passes = poll.passes
    await asyncio.sleep(0)
    poll.end(unpolled)  # a quick reply, measured though not polled
    assert poll.passes == passes

    polled = poll.begin()
    assert poll.polling
    poll.end(polled)
    await _until_idle(poll)


async def test_the_window_is_counted_from_the_last_request_sent() -> None:
    """Two waits overlap: polling lasts until the window after the later begin."""
    poll = ReplyPoll(WINDOW)
    first = poll.begin()
    await asyncio.sleep(WINDOW * 0.6)
    second = poll.begin()
    await asyncio.sleep(WINDOW * 0.6)
    assert poll.polling  # past the first's window, inside the second's
    poll.end(first)
    await asyncio.sleep(0)
    assert poll.polling  # the second still waits
    poll.end(second)
    await _until_idle(poll)
    assert poll.waiting == 0


async def test_window_zero_never_polls() -> None:
    """``upstream.reply_poll_us: 0`` turns the poll off."""
    poll = ReplyPoll(0.0)
    started = poll.begin()
    await asyncio.sleep(0.005)
    poll.end(started)
    assert (poll.polling, poll.passes, poll.waiting) == (False, 0, 0)


async def test_polling_does_not_hold_up_other_work() -> None:
    """While it polls, other tasks run in the same passes."""
    poll = ReplyPoll(WINDOW)
    started = poll.begin()
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    await ran.wait()
    assert poll.polling
    poll.end(started)
    await _until_idle(poll)
