"""JSON errors for the control plane: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from quart import Quart, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from neuro_api.server import FrameTooLarge

__all__ = ["ApiError", "describe_validation_error", "install_error_handlers"]

_NOT_AN_OBJECT = frozenset({"dataclass_type", "dict_type", "model_type"})
_UNKNOWN_FIELD = frozenset({"unexpected_keyword_argument", "extra_forbidden"})


class ApiError(Exception):
    """An error a route answers with: HTTP status, stable code, message.

    ``headers`` are added to the response (``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def describe_validation_error(
    error: Exception | None, unknown_field: str | None = None
) -> str:
    """One readable line per problem, naming the field, no documentation URL.

    ``wants_shutdown: Input should be a valid boolean``; a body that is not
    an object reads ``body: Input should be a JSON object``; a field the
    model does not have reads ``cell: unknown field``, followed by
    ``"; " + unknown_field`` if given. Problems are joined with ``"; "``.
    """
    if not isinstance(error, ValidationError):
        text = str(error or "").strip()
        return text.splitlines()[0] if text else "invalid request body"
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        message = problem["msg"]
        if not problem["loc"] and problem["type"] in _NOT_AN_OBJECT:
            message = "Input should be a JSON object"
        elif problem["type"] in _UNKNOWN_FIELD:
            message = "unknown field"
            if unknown_field:
                message += f"; {unknown_field}"
        problems.append(f"{where}: {message}")
    return "; ".join(problems) or "invalid request body"


def _body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: Quart) -> None:
    """Make every error of ``app`` a JSON body (never an HTML page)."""

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Any:
        return jsonify(_body(error.code, error.message)), error.status, error.headers

    @app.errorhandler(FrameTooLarge)
    async def frame_too_large(error: FrameTooLarge) -> Any:
        # A route's own check answers first; this covers any frame it missed.
        return jsonify(_body("payload_too_large", str(error))), 413

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Any:
        message = describe_validation_error(error.validation_error)
        return jsonify(_body("invalid_request", message)), 400

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        code = (error.name or "error").lower().replace(" ", "_")
        status = error.code or 500
        if status == 400:
            # Quart raises a bare 400 for a body that is not JSON.
            code, message = "invalid_json", "request body is not valid JSON"
        else:
            message = error.description or error.name or "error"
        return jsonify(_body(code, message)), status
