"""IMAP's date forms (RFC 3501): SEARCH dates and INTERNALDATE. Pure."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_INTERNALDATE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$",
    re.ASCII,  # \d would match any Unicode digit, which int() reads as well
)


def imap_date(day: date) -> str:
    """A SEARCH date (`1-Feb-2026`); month names are English whatever the locale."""
    return f"{day.day}-{_MONTH_NAMES[day.month - 1]}-{day.year}"


def parse_internal_date(text: str) -> datetime | None:
    """`"17-Jul-1996 02:44:25 -0700"` as an aware UTC datetime (None if malformed)."""
    match = _INTERNALDATE.match(text)
    if not match:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    month_number = _MONTHS.get(month.capitalize())
    if month_number is None:
        return None
    try:
        local = datetime(int(year), month_number, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset_seconds = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1)
    timestamp = local.replace(tzinfo=UTC).timestamp() - offset_seconds
    return datetime.fromtimestamp(timestamp, UTC)
