"""Normalizers: one raw event (any source) -> its learning facts.

``normalize`` decodes the raw event's JSON payload and hands it to its source's normalizer (``timeback``,
``hub``, ``caliper``), each a declarative conversion set (``streams.normalizers.base``). ``urn:uuid:`` strings are
lower-cased first (UUIDs compare case-insensitively), so an upper-case re-send is the same fact, not a conflict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.errors import NormalizationError
from schemas.event_identity import has_upper_case_uuid_urn, lower_uuid_urns
from schemas.kafka import Source
from schemas.records import LearningFact, RawEvent
from streams.normalizers.base import NormalizeOptions, decode_payload
from streams.normalizers.caliper import normalize_caliper
from streams.normalizers.hub import normalize_hub
from streams.normalizers.timeback import normalize_timeback

SourceNormalizer = Callable[[RawEvent, dict[str, Any], NormalizeOptions], list[LearningFact]]

NORMALIZERS: dict[str, SourceNormalizer] = {
    Source.TIMEBACK.value: normalize_timeback,
    Source.HUB.value: normalize_hub,
    Source.CALIPER.value: normalize_caliper,
}

__all__ = ["NORMALIZERS", "NormalizeOptions", "normalize", "normalize_with"]


def normalize(raw: RawEvent, *, email_hash_key: bytes, keep_raw_email: bool, normalizer_version: str,
              student_key: bytes) -> list[LearningFact]:
    """The learning facts of one raw event (none for a Caliper entity); NormalizationError if it has none."""
    return normalize_with(raw, NormalizeOptions(email_hash_key, keep_raw_email, normalizer_version, student_key))


def normalize_with(raw: RawEvent, options: NormalizeOptions) -> list[LearningFact]:
    """``normalize`` with its options already bundled (the worker builds them once)."""
    normalizer = NORMALIZERS.get(raw.source)
    if normalizer is None:
        raise NormalizationError(f"unknown source {raw.source!r}", event_id=raw.event_id)
    document = decode_payload(raw)
    if has_upper_case_uuid_urn(raw.payload):
        document = lower_uuid_urns(document)
    return normalizer(raw, document, options)
