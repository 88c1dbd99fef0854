"""One root error type with a shallow tree: transient (retry or reconnect) vs permanent (stop)."""

from __future__ import annotations


class K2Error(Exception):
    """Root of every error K2 raises on purpose."""


class TransientError(K2Error):
    """A failure worth retrying: the network, a rate limit, a venue hiccup."""


class PermanentError(K2Error):
    """A failure that retrying will not fix: stop and say why."""


class ConfigError(PermanentError):
    """Settings or instruments are invalid."""


class InputError(PermanentError):
    """What a user asked for cannot be done as asked: a bad flag, value, path, port or time range.

    The CLI prints it as one line and exits 2; the API answers 400 with its message.
    """


class ParseError(K2Error):
    """A venue message that is malformed or of an unexpected shape.

    Parse errors are counted and quarantined with the raw text; they never reconnect a session.
    """

    def __init__(self, reason: str, raw: bytes | str = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")


class RateLimited(TransientError):
    """The venue asked us to slow down (HTTP 429/418); wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class VenueRequestError(TransientError):
    """A REST request failed in a way that may succeed later (5xx, timeout, connection)."""


class VenueRejected(PermanentError):
    """The venue refused a request for good (unknown symbol, bad parameter)."""


class StoreLocked(PermanentError):
    """Another process owns the data directory."""


class StoreError(K2Error):
    """The hot store failed to execute a statement, for a reason K2 could not classify."""


class StoreUnavailable(StoreError, TransientError):
    """The hot store cannot take the statement now (down, unreachable, disk full, too many parts):
    retry with backoff; nothing is wrong with the data."""


class StoreRefused(StoreError, PermanentError):
    """The hot store refused the data itself (a value it cannot parse or hold): retrying the same
    rows can never succeed; isolate them."""


class Stopping(PermanentError):
    """The process is stopping: a long operation gave up at a safe point (it resumes next time)."""


class ArchiveError(K2Error):
    """The Iceberg archive failed."""
