"""The one error type: a status, an OperationOutcome issue code and a message naming the problem."""

from __future__ import annotations

# OperationOutcome issue type (http://hl7.org/fhir/issue-type) for each HTTP status we send.
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    408: "timeout",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class CdsError(Exception):
    """A failure the client is told about; never carries a token or patient data in its message."""

    def __init__(self, status: int, message: str, *, expression: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.expression = expression or []
        self.headers = headers or {}

    @property
    def issue_code(self) -> str:
        return ISSUE_CODES.get(self.status, "processing")
