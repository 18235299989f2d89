"""One error vocabulary for the whole project, mapped to gRPC status codes here only.

::

    ApiError                      (base; carries a gRPC status code)
    ├── InvalidError              INVALID_ARGUMENT   bad input; names object and field
    ├── NotFoundError             NOT_FOUND
    ├── AlreadyExistsError        ALREADY_EXISTS
    ├── ConflictError             ABORTED            stale resourceVersion / precondition
    ├── GoneError                 OUT_OF_RANGE       resourceVersion too old: relist
    ├── ForbiddenError            PERMISSION_DENIED
    ├── UnauthenticatedError      UNAUTHENTICATED
    ├── PreconditionError         FAILED_PRECONDITION
    ├── TooManyRequestsError      RESOURCE_EXHAUSTED slow watcher, size limits of a stream
    ├── TimeoutError_             DEADLINE_EXCEEDED
    └── UnavailableError          UNAVAILABLE        etcd or a peer unreachable: retry

INTERNAL is never raised on purpose: it always means a bug.
"""

from __future__ import annotations

import grpc


class ApiError(Exception):
    """Base of every error the API reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidError(ApiError):
    """Bad input; the message names the object and the field path."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ApiError):
    """The object or kind does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ApiError):
    """Create of a name that is taken."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ConflictError(ApiError):
    """Optimistic concurrency failed: re-read and retry."""

    code = grpc.StatusCode.ABORTED


class GoneError(ApiError):
    """The resourceVersion asked for is no longer available: relist."""

    code = grpc.StatusCode.OUT_OF_RANGE


class ForbiddenError(ApiError):
    """The caller may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(ApiError):
    """The caller is not authenticated."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PreconditionError(ApiError):
    """The system is not in a state that allows this operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class TooManyRequestsError(ApiError):
    """A limit was hit (slow watcher, rate limit)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineError(ApiError):
    """The operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(ApiError):
    """A dependency (etcd, a peer) is unreachable; safe to retry with back-off."""

    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    cls.code: cls
    for cls in (
        InvalidError,
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        GoneError,
        ForbiddenError,
        UnauthenticatedError,
        PreconditionError,
        TooManyRequestsError,
        DeadlineError,
        UnavailableError,
    )
}


def from_status(code: grpc.StatusCode, details: str) -> ApiError:
    """The exception for a gRPC status received from a server."""
    cls = _BY_CODE.get(code, ApiError)
    err = cls(details)
    if cls is ApiError:
        err.code = code
    return err
