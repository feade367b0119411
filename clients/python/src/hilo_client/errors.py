"""Exceptions: hilo's RFC 9457 problem documents, by HTTP status."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "HiloError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ValidationFailed",
    "RateLimited",
    "ServerError",
    "WaitTimeout",
    "error_from_response",
]


class HiloError(Exception):
    """An error answer of the hilo API.

    ``code`` is hilo's stable, machine-readable code (``WORKFLOW_NOT_FOUND``, …): program
    against it, not against ``message``.
    """

    status: int
    code: str
    message: str
    details: Any
    retry_after: float | None
    type: str | None
    instance: str | None
    body: Any

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        retry_after: float | None = None,
        type: str | None = None,
        instance: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else {}
        self.retry_after = retry_after
        self.type = type
        self.instance = instance
        self.body = body

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, code={self.code!r}, message={self.message!r})"


class BadRequest(HiloError):
    """400: a malformed query, path, header or body."""


class Unauthorized(HiloError):
    """401: no API key, or not a valid one, or revoked."""


class Forbidden(HiloError):
    """403: the key lacks the scope the call needs (or a tier forbids it)."""


class NotFound(HiloError):
    """404: no such resource in the key's tenant."""


class Conflict(HiloError):
    """409: the resource is not in a state that allows this (or an idempotency key reused)."""


class PayloadTooLarge(HiloError):
    """413: the body is larger than the server takes."""


class ValidationFailed(HiloError):
    """422: the body does not fit (an invalid workflow, an input or answer off its schema)."""


class RateLimited(HiloError):
    """429: over the key's rate limit or the tier's concurrency; see ``retry_after``."""


class ServerError(HiloError):
    """5xx: a fault on the server (its log has the reference in the message)."""


class WaitTimeout(TimeoutError):
    """``executions.wait`` ran out of time; ``execution`` is the last state seen."""

    def __init__(self, message: str, execution: Any) -> None:
        super().__init__(message)
        self.execution = execution


_BY_STATUS: dict[int, type[HiloError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: hilo sends seconds


def error_from_response(response: httpx.Response) -> HiloError:
    """The exception for an error answer whose body has been read."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code: str = body["code"]
        message = body.get("detail")
        legacy = body.get("error")
        if not isinstance(message, str) and isinstance(legacy, dict):
            message = legacy.get("message")
        details = body.get("details")
        kind = body.get("type") if isinstance(body.get("type"), str) else None
        instance = body.get("instance") if isinstance(body.get("instance"), str) else None
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        # The envelope of earlier versions: {"error": {code, message, details}}.
        legacy = body["error"]
        code = str(legacy.get("code", f"HTTP_{status}"))
        message = legacy.get("message")
        details = legacy.get("details")
        kind = instance = None
    else:
        code = f"HTTP_{status}"
        message = response.text[:500] if response.text else None
        details = None
        kind = instance = None
    if not isinstance(message, str) or not message:
        message = response.reason_phrase or f"HTTP {status}"
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else HiloError)
    return cls(
        status,
        code,
        message,
        details=details,
        retry_after=_retry_after(response),
        type=kind,
        instance=instance,
        body=body,
    )
