"""The exceptions of vmm: one hierarchy for the embedded client and the remote one.

Every exception is a :class:`VmmError` and, where one fits, a builtin too:
``NotFoundError`` is a ``LookupError``, ``InvalidInputError`` a ``ValueError``,
``PermissionError`` and ``TimeoutError`` the builtins of the same names. Each carries

* ``code``: the API's stable error code (``vm_not_found``, ``active_task``…);
* ``status``: the HTTP status the API answers it with;
* ``message``: what went wrong this time;
* ``ids``: the ids involved (``{"vm_id": …, "task_id": …}``; ``field`` for invalid input);
* ``rejections``: for ``no_capacity``, every node considered with its reasons.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, List, Mapping, Optional, Type

__all__ = [
    "VmmError",
    "NotFoundError",
    "ConflictError",
    "ActiveTaskError",
    "InvalidStateError",
    "PoolExhaustedError",
    "NoCapacityError",
    "QuotaExceededError",
    "InvalidInputError",
    "PermissionError",
    "AuthenticationError",
    "BackendUnavailableError",
    "UnsupportedError",
    "TimeoutError",
    "TaskFailedError",
    "error_from",
]


class VmmError(Exception):
    """Base class of every vmm error."""

    code: str
    status: int
    message: str
    ids: Dict[str, str]
    rejections: Optional[List[Dict[str, Any]]]

    def __init__(
        self,
        message: str,
        *,
        code: str = "internal",
        status: int = 500,
        ids: Optional[Mapping[str, str]] = None,
        rejections: Optional[List[Dict[str, Any]]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.ids = dict(ids or {})
        self.rejections = rejections


class NotFoundError(VmmError, LookupError):
    """What was asked for does not exist (or is another user's)."""


class ConflictError(VmmError):
    """The request conflicts with the current state."""


class ActiveTaskError(ConflictError):
    """The VM already has a queued or running task (its id is ``ids["task_id"]``)."""


class InvalidStateError(ConflictError):
    """The action is not allowed in the VM's state."""


class PoolExhaustedError(ConflictError):
    """The IP pool has no free address."""


class NoCapacityError(ConflictError):
    """No node can take the VM; ``rejections`` says why, node by node."""


class QuotaExceededError(ConflictError):
    """The change would pass a limit of the owner's quota."""


class InvalidInputError(VmmError, ValueError):
    """A value in the request is invalid (``ids["field"]`` names it)."""


class PermissionError(VmmError, builtins.PermissionError):  # noqa: A001 (the builtin's name, on purpose)
    """The user may not do this."""


class AuthenticationError(PermissionError):
    """The token is missing, wrong, expired or revoked."""


class BackendUnavailableError(VmmError):
    """A node, the database or the server cannot be reached now."""


class UnsupportedError(VmmError):
    """The backend does not support this."""


class TimeoutError(VmmError, builtins.TimeoutError):  # noqa: A001
    """A wait ran out of time."""


class TaskFailedError(VmmError):
    """A task failed with an error code that has no class of its own."""


_BY_CODE: Dict[str, Type[VmmError]] = {
    "active_task": ActiveTaskError,
    "invalid_state": InvalidStateError,
    "pool_exhausted": PoolExhaustedError,
    "no_capacity": NoCapacityError,
    "quota_exceeded": QuotaExceededError,
    "forbidden": PermissionError,
    "unauthorized": AuthenticationError,
    "unauthenticated": AuthenticationError,
    "conflict": ConflictError,
    "address_in_use": ConflictError,
    "invalid": InvalidInputError,
    "unavailable": BackendUnavailableError,
    "unsupported": UnsupportedError,
    "timeout": TimeoutError,
}

# For codes without a class of their own: the class of the HTTP status they come with.
_BY_STATUS: Dict[int, Type[VmmError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: PermissionError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidInputError,
    415: InvalidInputError,
    422: InvalidInputError,
    429: BackendUnavailableError,
    501: UnsupportedError,
    502: BackendUnavailableError,
    503: BackendUnavailableError,
    504: TimeoutError,
}


def error_from(
    code: str,
    message: str,
    ids: Optional[Mapping[str, str]] = None,
    status: Optional[int] = None,
    rejections: Optional[List[Dict[str, Any]]] = None,
) -> VmmError:
    """The exception for an error `code`: the one mapping from codes to classes. `status`
    is the HTTP status it came with (by default the one the API gives the code)."""
    if status is None:
        status = status_of(code)
    if code.endswith("_not_found"):
        cls: Type[VmmError] = NotFoundError
    else:
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status, VmmError)
    return cls(message, code=code, status=status, ids=ids, rejections=rejections)


def status_of(code: str) -> int:
    """The HTTP status the API answers an error `code` with (a failed task's, say)."""
    if code.endswith("_not_found"):
        return 404
    return _STATUS_OF.get(code, 409 if issubclass(_BY_CODE.get(code, VmmError), ConflictError) else 500)


_STATUS_OF: Dict[str, int] = {
    "invalid": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "unsupported": 501,
    "unavailable": 503,
    "timeout": 503,
}


def from_problem(status: int, problem: Any) -> VmmError:
    """The exception for an HTTP error answer: its problem+json body, or just its status."""
    if not isinstance(problem, dict):
        problem = {}
    ids = {str(k): str(v) for k, v in (problem.get("ids") or {}).items()}
    if problem.get("field"):
        ids["field"] = str(problem["field"])
    code = str(problem.get("code") or _STATUS_CODES.get(status, "internal"))
    message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    rejections = problem.get("rejections")
    return error_from(code, message, ids, status, rejections if isinstance(rejections, list) else None)


# The code of an answer without a problem body (a proxy's 502, say).
_STATUS_CODES: Dict[int, str] = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "timeout",
}
