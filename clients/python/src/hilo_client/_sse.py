"""A Server-Sent Events decoder (the WHATWG event-stream format), fed line by line."""

from __future__ import annotations

from .models import ServerSentEvent


class SSEDecoder:
    """Turns the lines of an event stream into events; ``last_event_id`` is where to resume."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Takes one line (without its end); answers the event a blank line completes."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if self._id is not None:
            self.last_event_id = self._id or None
        data, event, ident, retry = self._data, self._event, self._id, self._retry
        self._event, self._data, self._id, self._retry = "", [], None, None
        if not data:
            return None  # no data line: nothing to dispatch (the spec's rule)
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=ident or None, retry=retry
        )
