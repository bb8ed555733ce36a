"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the matching status.

OpenAI's clients read ``error.message`` and raise by HTTP status (400 `BadRequestError`, 413, 429
`RateLimitError`, which they retry after ``Retry-After``, 503 …),
so every refusal of the gateway, FastAPI's own validation and routing errors included, is answered
in this one shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
RATE_LIMIT = "rate_limit_error"


class OpenAIError(HTTPException):
    """A refusal the client should see as it is: status, message, and the field it concerns.

    An `HTTPException`, so that FastAPI lets it through when it is raised while the body is read
    (the upload limit does that) instead of turning it into "error parsing the body".
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _validation(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 becomes OpenAI's 400, naming the first field that is missing or wrong."""
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    param = location[0] if location else None
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
    return OpenAIError(400, message, param=param).response()


def _http(_: Request, error: Exception) -> JSONResponse:
    """Unknown routes, wrong methods and unparsable bodies, in the same shape."""
    assert isinstance(error, HTTPException)
    kind = SERVER_ERROR if error.status_code >= 500 else INVALID_REQUEST
    return OpenAIError(error.status_code, str(error.detail), type=kind).response()


def _own(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OpenAIError)
    return error.response()


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in OpenAI's shape."""
    app.add_exception_handler(OpenAIError, _own)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
