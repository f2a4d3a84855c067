"""A tenant's time zone: the contract between the client registry (gateway), the raw event and the normalizers.

Each tenant has an IANA time zone (default ``UTC``), set with ``caliper-pipeline clients add --timezone`` or
``clients timezone``. The gateway stamps it on every raw event (``RawEvent.tenant_timezone``); the normalizers read
offset-less times in it and give every fact the local date of its event time (``LearningFact.event_date_days``).
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.errors import UnknownTimeZoneError

DEFAULT_TIMEZONE = "UTC"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=1024)
def zone_for(name: str) -> ZoneInfo:
    """The time zone of an IANA name; UnknownTimeZoneError for anything else (also paths and empty names)."""
    if not isinstance(name, str) or not name or len(name) > 64 or name != name.strip():
        raise UnknownTimeZoneError(str(name))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # ValueError: a path, not a key
        raise UnknownTimeZoneError(name) from error


def checked_timezone(name: str) -> str:
    """``name`` if it is a known IANA time zone (the form the registry stores), else UnknownTimeZoneError."""
    zone_for(name)
    return name


def local_days(epoch_ms: int, zone: tzinfo) -> int:
    """The local calendar date in ``zone`` of an instant (UTC epoch milliseconds), as days since 1970-01-01."""
    if zone is UTC:
        return epoch_ms // 86_400_000
    moment = (_EPOCH + timedelta(milliseconds=epoch_ms)).astimezone(zone)
    return moment.date().toordinal() - _EPOCH_ORDINAL
