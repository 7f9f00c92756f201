"""The node's one error tree.

Every refusal the node makes is a :class:`NodeError` with a stable ``code`` (part of the public contract, listed in
``docs/PROTOCOL.md``) and a ``message`` safe to show to the caller: it never contains data values, file paths, keys,
SQL or exception text from a library. Each subclass fixes the category that the HTTP edge (``node.http``) and the
Flight edge (``node.flight``) each map exactly once.

    NodeError
    ├── InvalidArgument       400 / FlightServerError(INVALID_ARGUMENT) — malformed or ill-typed input
    │   └── PayloadTooLarge   413 — upload over the size limit
    ├── Unauthenticated       401 / FlightUnauthenticatedError — missing, unknown, expired or revoked token
    ├── PermissionDenied      403 / FlightUnauthorizedError — authenticated but not allowed (no licence, no bytes)
    ├── NotFound              404 / FlightServerError(NOT_FOUND) — absent, or not visible to the caller
    ├── Conflict              409 — state forbids the change (already revoked, duplicate name)
    └── Unavailable           503 / FlightUnavailableError — a dependency is down; retry later
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Conflict",
    "InvalidArgument",
    "NodeError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
]


class NodeError(Exception):
    """Base of every error the node shows a caller. ``code`` is stable; ``message`` is safe to show."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidArgument(NodeError):
    status = 400
    default_code = "invalid_argument"


class PayloadTooLarge(InvalidArgument):
    status = 413
    default_code = "payload_too_large"


class Unauthenticated(NodeError):
    status = 401
    default_code = "unauthenticated"


class PermissionDenied(NodeError):
    status = 403
    default_code = "permission_denied"


class NotFound(NodeError):
    status = 404
    default_code = "not_found"


class Conflict(NodeError):
    status = 409
    default_code = "conflict"


class Unavailable(NodeError):
    status = 503
    default_code = "unavailable"
