"""The fact id and the keyed hashes are computed without uuid's and hmac's Python objects (a per-fact cost of
the worker): they must stay exactly what ``uuid.uuid5`` and ``hmac.new(...).hexdigest()`` give, since facts
derived before and after the change (replays, erasure by student key) must agree."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from hypothesis import given
from hypothesis import strategies as st

from schemas.privacy import student_key_for
from schemas.records import FACT_ID_NAMESPACE, fact_id_for, pseudonymize_email

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)


@given(texts, texts, st.integers(0, 10_000))
def test_the_fact_id_is_the_uuid5_of_tenant_event_and_index(tenant: str, event_id: str, index: int) -> None:
    name = f"{tenant}\x1f{event_id}\x1f{index}"
    assert fact_id_for(tenant, event_id, index) == str(uuid.uuid5(FACT_ID_NAMESPACE, name))


@given(texts, texts, st.binary(min_size=1, max_size=100))
def test_the_keyed_hashes_are_hmac_sha256(tenant: str, text: str, key: bytes) -> None:
    assert student_key_for(tenant, text, key) == (
        hmac.new(key, f"{tenant}\x1f{text}".encode(), hashlib.sha256).hexdigest() if text else "")
    assert pseudonymize_email(text, key) == (
        hmac.new(key, text.strip().casefold().encode(), hashlib.sha256).hexdigest() if text else "")
