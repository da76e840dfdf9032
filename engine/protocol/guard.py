"""The stream rules every answer obeys, enforced in one place for SSE and JSON alike."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from ..iterators import close_iterator
from .events import Done, Error, Event, Meta, Replace, Text

log = logging.getLogger("engine.protocol")

UNEXPECTED = "The bot encountered an unexpected issue. Please try again later."
EMPTY = "The bot returned an empty answer. Please try again."
RESTARTING = "The bot's server is restarting. Please try again."


class ServerStopping(BaseException):
    """Raised into an answer still open when the server must stop (engine/worker.py).

    A BaseException, like GreenletExit, so that no `except Exception` on the way (an SDK's,
    a retry loop's) mistakes it for a failure to handle: it unwinds the answer, closing the
    model call, up to the guard, which ends the stream with a retryable error.
    """


def guarded(events: Iterable[Event], bot_name: str) -> Iterator[Event]:
    """`meta` first, some text or one `error`, nothing after the error, a final `done`.

    An exception inside the runtime becomes one `Error(allow_retry=False)`, logged with
    the bot's name, instead of a broken stream: by then the HTTP status is already 200.
    `ServerStopping` becomes `Error(RESTARTING, allow_retry=True)`: asked again, another
    server answers.
    """
    iterator = iter(events)
    started = answered = False
    try:
        for event in iterator:
            if not started:
                started = True
                yield event if isinstance(event, Meta) else Meta()
                if isinstance(event, Meta):
                    continue
            if isinstance(event, Done):
                break
            if isinstance(event, Meta):
                continue  # Poe ignores a non-first meta; so do we
            yield event
            answered = answered or isinstance(event, Text | Replace | Error)
            if isinstance(event, Error):
                break
    except (ServerStopping, Exception) as exc:
        if isinstance(exc, ServerStopping):
            log.warning("bot %s: the server stopped before the answer ended", bot_name)
            error = Error(RESTARTING, allow_retry=True)
        else:
            log.exception("bot %s: unexpected failure while answering", bot_name)
            error = Error(UNEXPECTED, allow_retry=False)
        if not started:
            started = True
            yield Meta()
        answered = True
        yield error
    finally:
        # Stop the producer (and whatever upstream call it holds) as soon as we stop reading.
        close_iterator(iterator)
    if not started:
        yield Meta()
    if not answered:  # Poe treats a stream without text as a broken bot
        log.warning("bot %s: the answer was empty", bot_name)
        yield Error(EMPTY, allow_retry=True)
    yield Done()
