"""RFC 3339 dates and date-times, exactly as their `format: date`/`date-time` say.

pydantic's lax datetime also takes Unix timestamps (`0.5`, `1700000000`), bare dates
and times without an offset; a query value is always a string, so strict mode cannot
tell these apart. `RFC3339DateTime` refuses them before pydantic parses the value, so
the server accepts what the schema declares and nothing else; `RFC3339Date` does the
same for a `format: date` body field.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import BeforeValidator

# RFC 3339 section 5.6 `date-time`: full date, `T`, time with seconds, optional
# fraction, and an offset (`Z` or +hh:mm); `T` and `Z` in either case. Ranges (month
# 13, minute 61) are left to pydantic, which refuses them.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _require_rfc3339(value: object) -> object:
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T09:30:00Z")


RFC3339DateTime = Annotated[datetime, BeforeValidator(_require_rfc3339)]

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _require_full_date(value: object) -> object:
    # Lax date also takes Unix timestamps (`0`) and datetimes at midnight.
    if isinstance(value, str) and _FULL_DATE.fullmatch(value):
        return value
    raise ValueError("must be an RFC 3339 full-date, e.g. 2024-05-01")


RFC3339Date = Annotated[date, BeforeValidator(_require_full_date)]
