"""Email address validation; the only importer of email-validator."""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator


def normalize_address(value: str) -> str:
    """Check syntax and normalize an address; no DNS lookups.

    Internal domains (`.internal`, `.lan`, dotless hosts) and the reserved `.test`
    (RFC 6761) are accepted: self-hosted and staging mail lives on them, and whether
    a domain is real is the mail server's call. `.local`, `.localhost`, `.invalid`
    and `.onion` stay refused.
    """
    try:
        checked = validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return checked.normalized


EmailAddress = Annotated[str, AfterValidator(normalize_address)]
"""A validated, normalized email address (pydantic field type)."""
