"""Personal data a sender puts in ``extensions`` reaches ``extensions_json`` pseudonymized or not at all.

Events are v1p2 Caliper events with Canvas-like ``com.instructure.canvas`` extensions (and others), validated and
published as the gateway does, normalized as the worker does; the policy is ``schemas.personal_data``.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from caliper_corpus import wrap
from published import published_events

from gateway.tokens import Caller
from schemas.caliper import check_envelope
from schemas.personal_data import (
    PERSONAL_KEYS,
    TREATMENTS,
    Category,
    ExtensionsPolicy,
    Pseudonymizer,
    Treatment,
    category_of,
    mentions_address,
)
from schemas.privacy import student_key_for
from schemas.records import LearningFact, pseudonymize_email
from streams.normalizers import NormalizeOptions, normalize_with

TENANT = "pii-school"
CALLER = Caller(client_id="pii-client", tenant=TENANT, scopes=frozenset(), rate_limit_per_second=None)
EMAIL_KEY, STUDENT_KEY = b"pii-email-key", b"pii-student-key"
OPTIONS = NormalizeOptions(EMAIL_KEY, keep_raw_email=False, normalizer_version="pii-test", student_key=STUDENT_KEY)

EMAIL, LOGIN, SIS_ID, IP, IPV6 = "ana.souza@school.example", "ana.souza77", "SIS-884120", "203.0.113.57", "2001:db8::57"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
NAME, CPF, PHONE = "Ana Souza", "123.456.789-09", "+55 11 91234-5678"
CANVAS = {  # what Canvas puts in actor.extensions["com.instructure.canvas"], and more
    "user_login": LOGIN, "user_sis_id": SIS_ID, "client_ip": IP, "user_agent": AGENT, "entity_id": "4411",
    "root_account_id": "10000000000001", "hostname": "school.instructure.com", "request_id": "a1b2c3",
}
SECRETS = (EMAIL, LOGIN, SIS_ID, IP, IPV6, AGENT, NAME, CPF, PHONE, "Souza")


def canvas_event() -> dict[str, Any]:
    """A v1p2 NavigationEvent carrying personal data in extensions at several depths and places."""
    return {
        "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "id": "urn:uuid:6f3c1f1e-8d1c-4f3b-9a0e-5d6c7b8a9f01", "type": "NavigationEvent", "action": "NavigatedTo",
        "actor": {"id": "https://school.example/users/77", "type": "Person", "email": EMAIL, "name": NAME,
                  "extensions": {"com.instructure.canvas": dict(CANVAS)}},
        "object": {"id": "https://school.example/courses/5/pages/intro", "type": "Page", "name": "Intro",
                   "extensions": {"com.instructure.canvas": {"asset_type": "wiki_page", "context": {
                       "Contact": f"Ana <{EMAIL}>", "Login-ID": EMAIL, "sisUserId": 884120, "courseCode": "MATH-7",
                       "people": [{"first_name": "Ana", "last_name": "Souza", "ip_address": IPV6, "cpf": CPF}]}}}},
        "eventTime": "2024-03-01T10:31:00.000Z",
        "extensions": {"session": {"remote_ip": IP, "phone": PHONE, "forwarded": f"for={IP}; proto=https",
                                   "reviewer": EMAIL, "note": "unit 3 done", "jane@school.example": 1}},
    }


def fact_of(event: dict[str, Any]) -> LearningFact:
    problems, published = check_envelope(wrap(event))
    assert not problems, problems
    (raw,) = published_events(published, CALLER, 1_780_000_000_000)
    (fact,) = normalize_with(raw, OPTIONS)
    return fact


def email_pseudonym(email: str) -> str:
    return pseudonymize_email(email, EMAIL_KEY)


def keyed_pseudonym(value: str) -> str:
    return student_key_for(TENANT, value, STUDENT_KEY)


def test_each_category_at_each_depth_is_pseudonymized_or_dropped() -> None:
    fact = fact_of(canvas_event())
    remainder = orjson.loads(fact.extensions_json)
    canvas = remainder["actor"]["extensions"]["com.instructure.canvas"]
    assert canvas == {  # the login and SIS id pseudonymized; the IP and user agent gone; the rest as sent
        "user_login": keyed_pseudonym(LOGIN), "user_sis_id": keyed_pseudonym(SIS_ID), "entity_id": "4411",
        "root_account_id": "10000000000001", "hostname": "school.instructure.com", "request_id": "a1b2c3"}
    assert "name" not in remainder["actor"]  # a Person's name, outside extensions too
    context = remainder["object"]["extensions"]["com.instructure.canvas"]["context"]
    # a login that is an e-mail joins with the learner's email pseudonym; a numeric SIS id is an identifier
    assert context == {"Login-ID": email_pseudonym(EMAIL), "sisUserId": keyed_pseudonym("884120"),
                       "courseCode": "MATH-7", "people": [{"cpf": keyed_pseudonym(CPF)}]}
    assert context["Login-ID"] == fact.student_email_hash
    assert remainder["extensions"] == {"session": {"reviewer": email_pseudonym(EMAIL), "note": "unit 3 done"}}
    for secret in SECRETS:
        assert secret.casefold() not in fact.extensions_json.casefold(), secret


def test_nothing_personal_means_nothing_changes() -> None:
    event = canvas_event()
    event["actor"] = {"id": "https://school.example/users/77", "type": "Person",
                      "extensions": {"com.instructure.canvas": {"entity_id": "4411", "hostname": "x.example"}}}
    event["object"].pop("extensions")
    event["extensions"] = {"lesson": {"courseCode": "MATH-7", "at": "2024-03-01T10:31:00Z", "version": "1.2.3"}}
    assert orjson.loads(fact_of(event).extensions_json) == {
        "actor": {"extensions": {"com.instructure.canvas": {"entity_id": "4411", "hostname": "x.example"}}},
        "extensions": {"lesson": {"courseCode": "MATH-7", "at": "2024-03-01T10:31:00Z", "version": "1.2.3"}}}


def test_the_document_the_event_came_in_is_not_modified() -> None:
    document = canvas_event()
    before = copy.deepcopy(document)
    Pseudonymizer(TENANT, EMAIL_KEY, STUDENT_KEY).document(document)
    assert document == before


@pytest.mark.parametrize(("key", "category"), [
    ("email", Category.EMAIL), ("E-Mail", Category.EMAIL), ("user_login", Category.IDENTIFIER),
    ("userLogin", Category.IDENTIFIER), ("LOGIN_ID", Category.IDENTIFIER), ("sis_user_id", Category.IDENTIFIER),
    ("cpf", Category.IDENTIFIER), ("client_ip", Category.NETWORK), ("remoteIp", Category.NETWORK),
    ("user_agent", Category.NETWORK), ("givenName", Category.NAME), ("Full Name", Category.NAME),
    ("phone", Category.CONTACT), ("http://example.edu/ns#email", Category.EMAIL), ("canvas:user_sis_id",
                                                                                   Category.IDENTIFIER),
    ("courseCode", None), ("hostname", None), ("entity_id", None), ("com.instructure.canvas", None),
])
def test_keys_are_matched_whatever_their_case_and_separators(key: str, category: Category | None) -> None:
    assert category_of(key) is category


@pytest.mark.parametrize(("text", "mentions"), [
    ("ana@school.example", True), ("write to ana@school.example today", True), ("10.0.0.1", True),
    ("for=10.0.0.1:443", True), ("fe80::1%eth0", True), ("[2001:db8::1]:8080", True), ("2001:db8::1", True),
    ("2024-03-01T10:31:00.000Z", False), ("10:31:00", False), ("std::vector", False), ("v1.2.3", False),
    ("MATH-7", False), ("@handle", False), ("999.1.1.1", False),
])
def test_addresses_are_found_in_values(text: str, mentions: bool) -> None:
    assert mentions_address(text) is mentions


def test_every_category_has_a_treatment_and_keys_are_in_one_category() -> None:
    assert set(TREATMENTS) == set(Category)
    keys = [key for group in PERSONAL_KEYS.values() for key in group]
    assert len(keys) == len(set(keys))


def test_a_tenant_keeps_or_drops_keys() -> None:
    policy = ExtensionsPolicy.of(keep=["user_sis_id"], drop=["USER_LOGIN", "hostname"])
    assert policy.treatment("userSisId") is None
    assert policy.treatment("user_login") is Treatment.DROP
    pseudonymizer = Pseudonymizer(TENANT, EMAIL_KEY, STUDENT_KEY, policy)
    document = {"extensions": {"c": {**CANVAS, "contact": EMAIL}}}
    assert pseudonymizer.document(document) == {"extensions": {"c": {
        "user_sis_id": SIS_ID, "entity_id": "4411", "root_account_id": "10000000000001", "request_id": "a1b2c3",
        "contact": email_pseudonym(EMAIL)}}}  # a kept key holding an e-mail would still be pseudonymized
    kept_email = Pseudonymizer(TENANT, EMAIL_KEY, STUDENT_KEY, ExtensionsPolicy.of(keep=["email"]))
    assert kept_email.document({"extensions": {"email": EMAIL}}) == {"extensions": {"email": email_pseudonym(EMAIL)}}


@pytest.mark.parametrize("kind", [["Person"], "Person", ["Agent", "Person"], {"not": "a name"}, 5])
def test_a_person_entity_is_found_whatever_its_type_is_written_as(kind: Any) -> None:
    document = {"actor": {"type": kind, "name": NAME, "extensions": {"x": {"ip": IP}}}}
    result = Pseudonymizer(TENANT, EMAIL_KEY, STUDENT_KEY).document(document)
    person = kind == "Person" or (isinstance(kind, list) and "Person" in kind)
    assert result == {"actor": {"type": kind, "extensions": {"x": {}}, **({} if person else {"name": NAME})}}
