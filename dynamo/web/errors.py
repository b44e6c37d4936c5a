"""Errors a web module or the server raises on purpose; each maps to an HTTP status and the
``result`` word of the JSON envelope. The original's names (``MissingParameter``,
``IllFormedRequest``, ``InvalidRequest``, ``AuthorizationError``) are kept for its modules."""

from __future__ import annotations

from typing import Any


class WebError(Exception):
    status = 500
    result = "Error"
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(WebError):
    status = 400
    result = "BadRequest"


class MissingParameter(BadRequest):
    def __init__(self, param_name: str, context: str | None = None):
        where = f" in {context}" if context else ""
        super().__init__(f'Missing required parameter "{param_name}"{where}.')
        self.param_name = param_name


class IllFormedRequest(BadRequest):
    def __init__(self, param_name: str, value: Any, hint: str | None = None, allowed: Any = None):
        shown = str(value)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        text = f'Parameter "{param_name}" has illegal value "{shown}".'
        if hint:
            text += f" {hint}."
        if allowed is not None:
            text += f" Allowed values: {', '.join(str(a) for a in allowed)}"
        super().__init__(text)
        self.param_name = param_name


class InvalidRequest(BadRequest):
    pass


class MethodNotAllowed(WebError):
    status = 405
    result = "BadRequest"


class PayloadTooLarge(BadRequest):
    status = 413


class AuthorizationError(WebError):
    status = 403
    result = "AuthFailed"


class NotFound(WebError):
    status = 404
    result = "NotFound"


class Unavailable(WebError):
    status = 503
    result = "Unavailable"

