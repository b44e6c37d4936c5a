"""Replies: what the server sends, built here and read here, by the server, the commands and the tests.

Every reply is a JSON object with a ``type`` (:class:`Reply`). The shapes::

    error     {"type": "error", "code": ErrorCode, "message": str}
    result    {"type": "result", "data": ...}
    accepted  {"type": "accepted"[, "id": int]}          an upload may start / an async app was queued
    queued    {"type": "queued", "reason": str[, "id": int]}
    started   {"type": "started", "id": int, "version": int}
    out, err  {"type": "out" | "err", "data": str}       an application's output
    prompt    {"type": "prompt", "text": str}            the shell's console wants a line
    exit      {"type": "exit", "id": int, "status": str, "code": int | None, "message": str,
               "version": int | None}

Plain dicts and string enums rather than classes: the ``dynamo`` command decodes
them on its hot path (its time to first output counts), and JSON is what travels.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reply(StrEnum):
    ERROR = "error"
    RESULT = "result"
    ACCEPTED = "accepted"
    QUEUED = "queued"
    STARTED = "started"
    OUT = "out"
    ERR = "err"
    PROMPT = "prompt"
    EXIT = "exit"


class ErrorCode(StrEnum):
    """Why a request was refused; each maps to one exit code of the commands (``exit_for``)."""

    PERMISSION = "permission"      # unknown user, missing role, unauthorized write
    INVALID = "invalid"            # a document or change set was refused: nothing changed
    PROTOCOL = "protocol"          # a malformed or unexpected request
    NOT_FOUND = "not_found"        # no such application, user, ...
    STORE = "store"                # the store failed while acting on the request
    UNAVAILABLE = "unavailable"    # the store or server cannot take the request now: try again
    OVERLOADED = "overloaded"      # a limit of the server (connections, memory) was reached: try again later
    INTERNAL = "internal"          # the server failed on this request (logged there); it goes on serving


# --- constructors (the server's side) --------------------------------------------------

def error(message: str, code: ErrorCode) -> dict[str, Any]:
    return {"type": Reply.ERROR, "code": code, "message": message}


def result(data: Any) -> dict[str, Any]:
    return {"type": Reply.RESULT, "data": data}


def accepted(app_id: int | None = None) -> dict[str, Any]:
    return {"type": Reply.ACCEPTED} if app_id is None else {"type": Reply.ACCEPTED, "id": app_id}


def queued(reason: str, app_id: int | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": Reply.QUEUED, "reason": reason}
    if app_id is not None:
        reply["id"] = app_id
    return reply


def started(app_id: int, version: int) -> dict[str, Any]:
    return {"type": Reply.STARTED, "id": app_id, "version": version}


def output(kind: str, data: str) -> dict[str, Any]:
    """An application's ``out`` or ``err`` text."""
    if kind not in (Reply.OUT, Reply.ERR):
        raise ValueError(f"output kind {kind!r}")
    return {"type": kind, "data": data}


def prompt(text: str) -> dict[str, Any]:
    return {"type": Reply.PROMPT, "text": text}


def exit_(app_id: int, status: str, code: int | None, message: str, version: int | None) -> dict[str, Any]:
    """An application ended: its final state (an AppState value), exit code, message and the version it
    saw or, for a writer, committed."""
    return {"type": Reply.EXIT, "id": app_id, "status": status, "code": code, "message": message,
            "version": version}
