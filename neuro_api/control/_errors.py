"""JSON errors for the control plane: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "install_error_handlers"]


class ApiError(Exception):
    """An error a route answers with: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: Quart) -> None:
    """Make every error of ``app`` a JSON body (never an HTML page)."""

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Any:
        return jsonify(_body(error.code, error.message)), error.status

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Any:
        cause = error.validation_error
        message = str(cause).replace("\n", "; ") if cause else "invalid request body"
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
