"""One rule for the id of an entity reference, used by the gateway (job records, partition keys), the worker and
the sink's archive alike: a blank id is no id."""

from __future__ import annotations

from typing import Any

import pytest

import gateway.ingest
from schemas.event_identity import reference_id


@pytest.mark.parametrize(("value", "expected"), [
    ("urn:uuid:1", "urn:uuid:1"),
    ({"id": "urn:uuid:2", "type": "Person"}, "urn:uuid:2"),
    ("   ", ""),
    ({"id": " \t"}, ""),
    ({"id": 7}, ""),
    (None, ""),
    (["urn:uuid:3"], ""),
])
def test_a_reference_names_its_id_and_a_blank_one_names_none(value: Any, expected: str) -> None:
    assert reference_id(value) == expected


def test_the_gateway_reads_references_by_the_same_rule() -> None:
    """The gateway had a copy that kept a whitespace-only id (the worker's rule drops it)."""
    assert gateway.ingest.reference_id({"id": "  "}) == ""
