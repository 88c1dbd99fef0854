"""Errors as problem details (RFC 9457, `application/problem+json`): type, title, status and a
one-line detail, for every error the API answers, its own and the framework's."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from k2.errors import InputError

PROBLEM = "application/problem+json"
_SCHEMA = {
    "type": "object",
    "title": "Problem",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def answer(description: str) -> dict[str, Any]:
    """An error answer in the OpenAPI schema: problem details."""
    return {"description": description, "content": {PROBLEM: {"schema": _SCHEMA}}}


# The errors every data route may answer, as the schema says them (FastAPI's own 422 entry, in
# application/json, is replaced: what is served is problem details).
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: answer("A mistake in the request: an unknown venue or symbol, a bad time or cursor"),
    401: answer("The API wants a bearer token"),
    422: answer("A parameter of the wrong type or out of range"),
    503: answer("The hot store is not open yet"),
}


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem-details answer."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def one_line(errors: list[Any]) -> str:
    """FastAPI's validation errors as one line: where and what."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}"
        for e in errors
    )


def install(app: FastAPI) -> None:
    """Answer every error of `app` as problem details."""

    async def input_error(request: Request, err: Exception) -> JSONResponse:
        """A mistake in the request (a filter, a time, a table name): 400 with the reason."""
        return problem(400, str(err))

    async def http_error(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        return problem(err.status_code, str(err.detail), getattr(err, "headers", None))

    async def invalid(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        return problem(422, one_line(list(err.errors())))

    app.add_exception_handler(InputError, input_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
