"""A Server-Sent Events parser (the event stream format of the HTML standard, section 9.2.6,
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation), for
`warren events --follow`.

Fed text as it arrives (any chunking), it yields each dispatched message: lines end with CRLF, LF or
CR; a line starting with ":" is a comment (the keep-alives); `field: value` (one space after the colon
dropped) sets `event`, appends to `data` (joined by LF), sets `id` (unless it holds a NUL) and
`retry` (digits only); other fields are ignored; a blank line dispatches the message if it has data.
The last id persists across messages, as the standard's "last event ID buffer" does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from warren.errors import WarrenError

_EOL = re.compile(r"[\r\n]")
# The most one message may hold, its unfinished line and data together, in characters: a manager's
# event is a few hundred bytes (warren.store.events); past this the stream is refused, not buffered.
MAX_MESSAGE_CHARS = 1 << 20


@dataclass(frozen=True, slots=True)
class Message:
    event: str  # "message" when the stream named none
    data: str
    id: str | None  # the last event id seen so far (this message's, or an earlier one's)
    retry_ms: int | None = None


class Parser:
    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._pending = 0  # characters of data in the message being read
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._cr = False  # the previous chunk ended with CR: a LF starting the next one belongs to it

    def feed(self, text: str) -> Iterator[Message]:
        """The messages `text` completes."""
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        buffer = self._buffer + text
        start = 0
        try:
            while (cut := _line_end(buffer, start)) is not None:
                end, after = cut
                line, start = buffer[start:end], after
                message = self._line(line)
                if message is not None:
                    yield message
        finally:  # the rest, once (not a copy per line); kept even if the reader stops early
            self._buffer = buffer[start:]
        if len(self._buffer) + self._pending > MAX_MESSAGE_CHARS:
            raise WarrenError(f"the event stream sent a message over {MAX_MESSAGE_CHARS} characters")

    def _line(self, line: str) -> Message | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._has_data = True
            self._pending += len(value) + 1
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit() and value.isascii():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Message | None:
        event, data, has = self._event, "\n".join(self._data), self._has_data
        self._event, self._data, self._has_data, self._pending = "", [], False, 0
        if not has:
            return None
        return Message(event or "message", data, self.last_id, self.retry_ms)


def _line_end(buffer: str, start: int) -> tuple[int, int] | None:
    """(end of the first complete line from `start`, start of the next) in `buffer`; None if no line
    is complete. A CR at the very end waits for the next chunk (it may be the start of a CRLF)."""
    m = _EOL.search(buffer, start)
    if m is None:
        return None
    i = m.start()
    if buffer[i] == "\r" and i + 1 < len(buffer) and buffer[i + 1] == "\n":
        return i, i + 2
    return i, i + 1
