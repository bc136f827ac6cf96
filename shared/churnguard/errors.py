"""Domain errors. Each carries the HTTP status and stable code the API answers with, so the
mapping to responses lives in one place (churnguard.api.http) and handlers never build them."""

from __future__ import annotations

from typing import Any


class ChurnGuardError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}


class BadRequestError(ChurnGuardError):
    status_code = 400
    code = "bad_request"


class UnauthorizedError(ChurnGuardError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(ChurnGuardError):
    status_code = 403
    code = "forbidden"


class NotFoundError(ChurnGuardError):
    status_code = 404
    code = "not_found"


class ConflictError(ChurnGuardError):
    status_code = 409
    code = "conflict"


class OrganizationBusyError(ConflictError):
    """The organisation already runs as many syncs as its deployment allows at once. A conflict
    (a scheduled sync skips its turn), answered 429: the same request succeeds later."""

    status_code = 429
    code = "too_many_syncs"


class PayloadTooLargeError(ChurnGuardError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ChurnGuardError):
    status_code = 415
    code = "unsupported_media_type"


class ValidationFailedError(ChurnGuardError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailableError(ChurnGuardError):
    """An AWS dependency refused a call; nothing was left half-done and the request may be retried."""

    status_code = 503
    code = "service_unavailable"


class CredentialDecryptionError(ChurnGuardError):
    """Ciphertext does not decrypt under this integration's encryption context.

    Raised when a stored credential was copied from another integration or tampered with; the
    message never contains key material or plaintext.
    """

    status_code = 500
    code = "credential_decryption_failed"
