"""What becomes of personal data a sender puts in ``extensions``: the one definition the normalizers and the docs
share.

Whatever no normalizer rule maps is kept in the fact's ``extensions_json``, which analysts read. Senders put
personal data there (Canvas: ``actor.extensions["com.instructure.canvas"]`` carries ``user_login``,
``user_sis_id``, ``client_ip``...), so every ``extensions`` object of an event, wherever it is (the event's, the
actor's, the object's, an entity nested in them) and at any depth inside it, goes through this policy first:

- **by key** (``PERSONAL_KEYS``): a key is matched on its name with case, ``_``, ``-``, ``.`` and spaces ignored
  (``user_login``, ``userLogin`` and ``User-Login`` are one key), and for a namespaced key on its last segment
  too (``http://example.edu/ns#email``). Each key has a category, and each category a treatment
  (``TREATMENTS``):

  - ``email`` -> the email pseudonym (``schemas.records.pseudonymize_email``, the hash of
    ``student_email_hash``): it still joins with the learner's email pseudonym;
  - ``identifier`` (logins, SIS ids, national ids) -> the keyed pseudonym of the tenant's student keys
    (``schemas.privacy.student_key_for``): joinable within the tenant, not reversible without the key; a login
    that is an e-mail address gets the email pseudonym instead;
  - ``network`` (IP addresses, user agents), ``name`` (names) and ``contact`` (phone, postal address, birth
    date) -> dropped: analyses need no address, browser fingerprint, name or phone, and a pseudonym of a name
    would join nothing (names are not unique and are spelled many ways) while a dictionary of the pseudonyms of
    common names is easy to build, which reverses it.

- **by value**: a value (or a key) that is an e-mail address gets the email pseudonym, one that is an IP address
  is dropped, and a text that merely contains an e-mail or IP address somewhere is dropped: a key named
  ``contact`` holding an e-mail does not pass.

The key rule applies to the Person entities of an event too (an actor's ``name`` or ``email`` no rule maps would
otherwise reach ``extensions_json`` as well), outside their ``extensions`` by key only.

The key rule can be adjusted (``ExtensionsPolicy``): ``keep`` a key declared non-personal, ``drop`` one (personal
or not) instead of pseudonymizing it; the value rule always applies (a kept key holding an e-mail address is still
pseudonymized). A tenant's adjustments are kept with its settings (``caliper-pipeline clients extensions``) and
travel like its time zone: the gateway stamps them on every raw event (``RawEvent.extensions_policy``, the text of
``ExtensionsPolicy.to_text``), the normalizers read them there (``policy_from_text``).
The raw archive keeps the event as sent (administrators only).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas.caliper.terms import PERSON_TYPES
from schemas.errors import InvalidExtensionsKeyError
from schemas.privacy import student_key_for
from schemas.records import pseudonymize_email


class Category(StrEnum):
    EMAIL = "email"
    IDENTIFIER = "identifier"
    NETWORK = "network"
    NAME = "name"
    CONTACT = "contact"


class Treatment(StrEnum):
    EMAIL_PSEUDONYM = "email pseudonym"  # schemas.records.pseudonymize_email
    KEYED_PSEUDONYM = "keyed pseudonym"  # schemas.privacy.student_key_for
    DROP = "drop"
    KEEP = "keep"


TREATMENTS: Mapping[Category, Treatment] = {
    Category.EMAIL: Treatment.EMAIL_PSEUDONYM,
    Category.IDENTIFIER: Treatment.KEYED_PSEUDONYM,
    Category.NETWORK: Treatment.DROP,
    Category.NAME: Treatment.DROP,
    Category.CONTACT: Treatment.DROP,
}

# The keys that carry personal data, by category (spelled snake_case here; matched by ``key_form``).
PERSONAL_KEYS: Mapping[Category, frozenset[str]] = {
    Category.EMAIL: frozenset({
        "email", "e_mail", "mail", "email_address", "user_email", "contact_email", "primary_email", "mbox",
    }),
    Category.IDENTIFIER: frozenset({
        "login", "login_id", "user_login", "username", "user_name", "unique_id", "sis_id", "user_sis_id",
        "sis_user_id", "sis_login_id", "student_number", "national_id", "cpf", "rg", "ssn", "integration_id",
    }),
    Category.NETWORK: frozenset({
        "ip", "ip_address", "client_ip", "remote_ip", "remote_addr", "x_forwarded_for", "forwarded_for",
        "user_agent", "user_agent_string", "browser",
    }),
    Category.NAME: frozenset({
        "name", "first_name", "last_name", "full_name", "given_name", "family_name", "middle_name",
        "display_name", "short_name", "sortable_name", "nickname", "user_full_name",
    }),
    Category.CONTACT: frozenset({
        "phone", "phone_number", "mobile", "telephone", "address", "street_address", "postal_code", "birth_date",
        "date_of_birth", "birthdate",
    }),
}

EXTENSIONS_KEY = "extensions"
_SEPARATORS = re.compile(r"[_\-.\s]+")
_EMAIL = re.compile(r"[^\s@<>()\[\]{},;:\"'/\\]+@[^\s@<>()\[\]{},;:\"'/\\]+\.[^\s@<>()\[\]{},;:\"'/\\.]{2,}")
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\w]|\.\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%\w+)?(?![\w:.])")


def key_form(key: str) -> str:
    """The form a key is matched in: lower case, without ``_``, ``-``, ``.`` nor spaces."""
    return _SEPARATORS.sub("", key.casefold())


_CATEGORY_OF: Mapping[str, Category] = {
    key_form(key): category for category, keys in PERSONAL_KEYS.items() for key in keys}


@functools.lru_cache(maxsize=4096)
def category_of(key: str) -> Category | None:
    """The personal-data category of a key name (also of a namespaced key's last segment), None if none."""
    form = key_form(key)
    if form in _CATEGORY_OF:
        return _CATEGORY_OF[form]
    last = re.split(r"[#/:]", key.rstrip("#/:"))[-1]
    return _CATEGORY_OF.get(key_form(last)) if last != key else None


def email_in(text: str) -> str | None:
    """The e-mail address ``text`` is (a ``mailto:`` IRI too), None if it is something else."""
    if "@" not in text:
        return None
    value = text.strip()
    if value[:7].casefold() == "mailto:":
        value = value[7:]
    return value if _EMAIL.fullmatch(value) is not None else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return False
    return True


def mentions_address(text: str) -> bool:
    """Whether ``text`` holds an e-mail or IP address anywhere (alone or within other text)."""
    if "@" in text and _EMAIL.search(text):
        return True
    if "." in text and _IPV4.search(text):
        return True
    if text.count(":") >= 2:
        return any(_is_ip(candidate.split("%")[0]) for candidate in _IPV6_CANDIDATE.findall(text))
    return False


@dataclass(frozen=True, slots=True)
class ExtensionsPolicy:
    """A tenant's adjustments of the key rule: keys it keeps as sent, keys it drops (both in ``key_form``)."""

    keep: frozenset[str] = frozenset()
    drop: frozenset[str] = frozenset()

    @classmethod
    def of(cls, keep: Iterable[str] = (), drop: Iterable[str] = ()) -> ExtensionsPolicy:
        """The policy keeping ``keep`` and dropping ``drop`` (a key in both is dropped: the safe side wins)."""
        dropped = frozenset(key_form(key) for key in drop)
        return cls(frozenset(key_form(key) for key in keep) - dropped, dropped)

    def to_text(self) -> str:
        """The form the policy travels in on a raw event (``RawEvent.extensions_policy``): canonical JSON, ''
        for the default policy."""
        if not self.keep and not self.drop:
            return ""
        return json.dumps({"drop": sorted(self.drop), "keep": sorted(self.keep)}, separators=(",", ":"))

    def treatment(self, key: str) -> Treatment | None:
        """What the key rule does with ``key``'s value; None: nothing (the value rule still applies)."""
        if self.keep or self.drop:
            form = key_form(key)
            if form in self.drop:
                return Treatment.DROP
            if form in self.keep:
                return None
        category = category_of(key)
        return TREATMENTS[category] if category is not None else None


DEFAULT_POLICY = ExtensionsPolicy()
MAX_POLICY_KEYS = 64  # keys a tenant may keep, and as many it may drop: the policy travels on every raw event
MAX_POLICY_KEY_LENGTH = 128


def checked_policy_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """``keys`` as a tenant's settings store them (sorted, once each), or InvalidExtensionsKeyError: an empty key
    (nothing but case, separators and spaces), one longer than ``MAX_POLICY_KEY_LENGTH``, more than
    ``MAX_POLICY_KEYS``."""
    checked = sorted({key.strip() for key in keys})
    for key in checked:
        if not key_form(key):
            raise InvalidExtensionsKeyError(key, "an empty key name")
        if len(key) > MAX_POLICY_KEY_LENGTH:
            raise InvalidExtensionsKeyError(key, f"longer than {MAX_POLICY_KEY_LENGTH} characters")
    if len(checked) > MAX_POLICY_KEYS:
        raise InvalidExtensionsKeyError(checked[MAX_POLICY_KEYS], f"more than {MAX_POLICY_KEYS} keys")
    return tuple(checked)


@functools.lru_cache(maxsize=256)
def policy_from_text(text: str) -> ExtensionsPolicy:
    """The policy a raw event carries (``ExtensionsPolicy.to_text``); the default one for '' and, on the safe side,
    for a text that is not a policy (a raw event is never refused for it)."""
    if not text:
        return DEFAULT_POLICY
    try:
        document = json.loads(text)
        keep, drop = document.get("keep", []), document.get("drop", [])
    except (ValueError, AttributeError):
        return DEFAULT_POLICY
    if not all(isinstance(names, list) and all(isinstance(name, str) for name in names) for names in (keep, drop)):
        return DEFAULT_POLICY
    return ExtensionsPolicy.of(keep, drop)
_DROPPED = object()


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """Applies a policy with the keys of the pseudonyms, for one tenant's events."""

    tenant: str
    email_hash_key: bytes
    student_key: bytes
    policy: ExtensionsPolicy = DEFAULT_POLICY

    def document(self, document: dict[str, Any], sent: dict[str, Any] | None = None) -> dict[str, Any]:
        """``document`` with every ``extensions`` object in it (at any depth) and its Person entities through the
        policy; a new object where something changed, the document itself where nothing did (it is never
        modified). ``sent``: the event ``document`` is the remainder of, where the types of its entities are."""
        result = _walk_outside(document, self, document if sent is None else sent)
        return result if isinstance(result, dict) else document

    def _value(self, value: Any, treatment: Treatment | None) -> Any:
        """A value inside an extensions object: by its key's treatment, then by what it looks like."""
        if treatment is Treatment.DROP:
            return _DROPPED
        if type(value) is dict:
            changed = False
            kept: dict[str, Any] = {}
            for key, item in value.items():
                if mentions_address(key):
                    changed = True
                    continue
                new = self._value(item, self.policy.treatment(key) or treatment)
                if new is _DROPPED:
                    changed = True
                    continue
                changed = changed or new is not item
                kept[key] = new
            return kept if changed else value
        if type(value) is list:
            items = [self._value(item, treatment) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return [item for item in items if item is not _DROPPED]
        if type(value) is str:
            email = email_in(value)
            if email is not None:
                return pseudonymize_email(email, self.email_hash_key)
            if mentions_address(value):
                return _DROPPED
            if treatment is Treatment.EMAIL_PSEUDONYM:
                return pseudonymize_email(value, self.email_hash_key)
            if treatment is Treatment.KEYED_PSEUDONYM:
                return student_key_for(self.tenant, value, self.student_key)
            return value
        if treatment in (Treatment.EMAIL_PSEUDONYM, Treatment.KEYED_PSEUDONYM) and type(value) in (int, float):
            return self._value(str(value), treatment)  # a numeric SIS id is an identifier all the same
        return value


def _is_person(kind: Any) -> bool:
    """Whether an entity's ``type`` (a name, or a list of names in JSON-LD) is a Caliper Person type."""
    if type(kind) is str:
        return kind in PERSON_TYPES
    return type(kind) is list and any(type(name) is str and name in PERSON_TYPES for name in kind)


def _walk_outside(value: Any, pseudonymizer: Pseudonymizer, sent: Any) -> Any:
    """``value`` with the extensions objects found in it through the policy, and the personal keys of the Person
    entities in it (their ``name``, ``email``...) through the key rule; the rest is kept as it is. ``sent`` is the
    same place in the event as sent: a remainder has lost the ``type`` a rule mapped, the event has not."""
    if type(value) is dict:
        sent_dict = sent if type(sent) is dict else {}
        person = _is_person(value.get("type") or sent_dict.get("type"))
        changed = False
        result: dict[str, Any] = {}
        for key, item in value.items():
            treatment = pseudonymizer.policy.treatment(key) if person else None
            if key.casefold() == EXTENSIONS_KEY or treatment is not None:
                new = pseudonymizer._value(item, treatment)
                if new is _DROPPED:
                    changed = True
                    continue
            else:
                new = _walk_outside(item, pseudonymizer, sent_dict.get(key))
            changed = changed or new is not item
            result[key] = new
        return result if changed else value
    if type(value) is list:
        sent_items = sent if type(sent) is list and len(sent) == len(value) else [None] * len(value)
        items = [_walk_outside(item, pseudonymizer, original) for item, original in zip(value, sent_items, strict=True)]
        return items if any(new is not old for new, old in zip(items, value, strict=True)) else value
    return value
