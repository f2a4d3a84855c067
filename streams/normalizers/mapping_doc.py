"""The fact mapping page (``docs/fact-mapping.md``), generated from the normalizers' rules and the LearningFact.

``python -m streams.normalizers.mapping_doc --write`` rewrites the page; a test fails when it is stale, so the
page can never disagree with the code.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections import defaultdict
from pathlib import Path

from schemas.personal_data import PERSONAL_KEYS, TREATMENTS, Category, Treatment
from schemas.records import LearningFact
from streams.normalizers.base import CONSUMED, ConversionSet
from streams.normalizers.caliper import (
    ACTOR_EMAIL,
    ASSIGNEE_ID,
    ASSIGNEE_TYPE,
    COMMON,
    CONVERSION_SETS,
    NON_LEARNER_ACTORS,
    SESSION_USER_ID,
    SESSION_USER_TYPE,
)
from streams.normalizers.hub import HUB, HUB_DEFAULTS
from streams.normalizers.timeback import TIMEBACK

TREATMENT_TEXT = {
    Treatment.EMAIL_PSEUDONYM: "its email pseudonym (the hash of `student_email_hash`: they join)",
    Treatment.KEYED_PSEUDONYM: "its keyed pseudonym (HMAC of tenant and value with the student key, as "
                               "`student_key`); an e-mail address: its email pseudonym",
    Treatment.DROP: "dropped",
    Treatment.KEEP: "kept",
}
PAGE = Path(__file__).resolve().parents[2] / "docs" / "fact-mapping.md"

# fields the normalizers fill from the raw event's routing metadata or compute, whatever the source
_FROM_ENVELOPE = {
    "fact_id": "uuid5(tenant, event id, fact index): a replay gives the same id",
    "fact_index": "0 (one fact per event today; the sub-index of events that yield several)",
    "content_hash": "hash of the event's canonical JSON (same id + other hash = a conflict)",
    "tenant": "the sender client's tenant (from its token)", "client_id": "the sender client",
    "source": "the door: timeback, hub or caliper",
    "send_time_ms": "envelope sendTime; null for the hub, which sends none",
    "received_time_ms": "the gateway's clock when it accepted the request",
    "event_date_days": "the local date of event_time_ms in tenant_timezone, days since 1970-01-01 (the table's "
                       "`event_date`)",
    "tenant_timezone": "the tenant's IANA time zone when the gateway accepted the event (`caliper-pipeline clients "
                       "timezone`); offset-less times of the event are read in it",
    "sensor": "envelope sensor (hub: edApp)",
    "student_email_hash": "HMAC-SHA256(key, case-folded email): the actor's `actor.email` when the student is the "
                          "actor (Timeback, generic Caliper), else empty",
    "student_key": "HMAC-SHA256(student key, tenant + 0x1F + student_id): the pseudonym erasure matches on",
    "student_email": "the raw email only with CALIPER_PRIVACY__KEEP_RAW_EMAIL=true",
    "score_ratio": "score_given / max_score when max_score > 0",
    "normalizer_version": "the worker's version", "extensions_json": "everything no rule mapped, as JSON, "
    "without personal data in clear (below)",
    "derived_time_ms": "when this derivation was made (the worker, or `caliper-pipeline renormalize`): of two "
                       "derivations of one version, the newer is current",
    "job_id": "the job of the request that carried the event (the gateway's `jobId`; null for re-derivations)",
    "envelope_index": "the event's position in that request (`data[i]`; 0 for the hub)",
}
_MULTI_FIELD = {
    "generated.items": ["xp_earned", "total_questions", "correct_questions", "mastered_units", "seconds_active",
                        "seconds_inactive", "seconds_waste", "seconds_unknown", "seconds_anti_pattern",
                        "seconds_by_sub_type", "started_time_ms", "ended_time_ms"],
    "object.assignable.skillCode": ["bncc_code", "bncc_stage", "bncc_year_group", "bncc_component", "bncc_number"],
}


# the generic normalizer's learner candidates (``find_learner`` picks one) and the fields they can become
_CANDIDATES = {ASSIGNEE_ID: ("student_id", "assignee"), ASSIGNEE_TYPE: ("learner_type", "assignee"),
               SESSION_USER_ID: ("student_id", "session user"), SESSION_USER_TYPE: ("learner_type", "session user"),
               ACTOR_EMAIL: ("student_email", "actor")}
# fields a normalizer sets in code, not by a rule
_SET_IN_CODE = {"learner_role": ("actor", "assignee", "assignee, actor, session_user or none")}


def _sources(conversion: ConversionSet) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for rule in conversion.rules:
        if rule.destination == CONSUMED:
            continue
        names = [rule.destination] if rule.destination else _MULTI_FIELD.get(rule.source, [])
        label = rule.source
        if rule.destination in _CANDIDATES:
            name, role = _CANDIDATES[rule.destination]
            names, label = [name], f"{rule.source} ({role})"
        for name in names:
            if label not in found[name]:
                found[name].append(label)
    for name, default in HUB_DEFAULTS.items():
        if conversion is HUB:
            found[name].append(f"default: {default}")
    if "actor_id" in found and conversion is COMMON:
        found["student_id"] += ["actor (Person)", "actor.id (Person)"]
        found["learner_type"] += ["actor.type (Person)"]
    return found


def _type_name(annotation: object) -> str:
    """``str``, ``float``, or ``float or null`` for an optional value."""
    if typing.get_origin(annotation) is dict:
        key, value = typing.get_args(annotation)
        return f"map {key.__name__} -> {value.__name__}"
    members = [m for m in typing.get_args(annotation) if m is not type(None)] or [annotation]
    names = [getattr(member, "__name__", str(member)) for member in members]
    optional = type(None) in typing.get_args(annotation)
    return " or ".join(names) + (" or null" if optional else "")


def render() -> str:
    hints = typing.get_type_hints(LearningFact)
    generic: dict[str, list[str]] = _sources(COMMON)
    for name, conversion in CONVERSION_SETS.items():
        for field_name, paths in _sources(conversion).items():
            for path in paths:
                label = path if path in generic.get(field_name, []) else f"{path} ({name})"
                if label not in generic[field_name]:
                    generic.setdefault(field_name, []).append(label)
    columns = [("Timeback (`/caliper/event`, TimebackProfile)", _sources(TIMEBACK)),
               ("hub (`/hub/v1/events`)", _sources(HUB)), ("generic Caliper 1.2", generic)]
    for index, (_, sources) in enumerate(columns):
        for name, by_source in _SET_IN_CODE.items():
            sources[name] = [by_source[index]]
    not_learners = ", ".join(f"{kind} ({'every action' if actions is None else ', '.join(sorted(actions))})"
                             for kind, actions in NON_LEARNER_ACTORS.items())
    lines = [
        "# The learning fact and where each source puts its fields",
        "",
        "Generated by `python -m streams.normalizers.mapping_doc --write` from `schemas/records.py` and the",
        "normalizers' rules in `streams/normalizers/`; a test fails when this page is stale. Where a cell lists",
        "several paths, the first one the event has wins. Metric items of Timeback (`generated.items[].type` =",
        "xpEarned, totalQuestions, ..., active, inactive, waste, unknown, anti-pattern) are summed per type into",
        "their columns, and a time-spent item with a `subType` also under `type/subType` in `seconds_by_sub_type`;",
        "a BNCC code is split into its parts.",
        "",
        "## When the event happened, and on which local day",
        "",
        "- Timeback and generic Caliper: `eventTime`.",
        "- hub (no eventTime): when the learning happened, `object.endedAtTime`, else `object.lastTime`, else",
        "  `object.startedAtTime`; `object.dateCreated` (when the hub created its record) is `date_created_ms`.",
        "- A time without an offset (the hub's `lastTime: \"2022-07-19T19:36:12.117\"`) is a wall-clock time of the",
        "  tenant's time zone (`tenant_timezone`, default UTC); `event_date_days` is the local date of the event",
        "  time in that zone.",
        "",
        "## Who the student is",
        "",
        "Found by role, not by position; `learner_role` says how:",
        "",
        "- `assignee`: the assignee of the event's Attempt (`object`, `generated` or `generated.attempt`); always",
        "  for the hub (`object.assignee`).",
        "- `actor`: the actor, when it is a Person (a TimebackUser for Timeback). An actor given by IRI alone (no",
        "  type) counts as one, except where the event type's actor is never the learner: " + not_learners + ".",
        "- `session_user`: the user of the Session a SessionEvent is about (a session timed out by the platform).",
        "- `none`: nobody found: `student_id`, `student_key` and the email hash are empty. The fact is loaded; the",
        "  actor (a grading application...) is in `actor_id`/`actor_type`, never in `student_id`.",
        "",
        "`urn:uuid:` ids are lower-cased (UUIDs compare case-insensitively): a re-send in upper case is the same",
        "fact (same `fact_id`, same `content_hash`).",
        "",
        "## `extensions_json`: what no rule mapped, without personal data in clear",
        "",
        "Analysts read `extensions_json`, so the personal data senders put there is pseudonymized or dropped first",
        "(`schemas/personal_data.py`, docs/security.md). In every `extensions` object of the event (the event's,",
        "the actor's, the object's, the generated entity's, any nested entity's; at any depth inside it) and in",
        "the Person entities (by key only), a key is matched whatever its case and its `_`, `-`, `.` and spaces",
        "(`userLogin` is `user_login`; a namespaced key by its last segment too):",
        "",
        "| category | keys | becomes |",
        "| --- | --- | --- |",
        *(f"| {category} | {', '.join(f'`{key}`' for key in sorted(PERSONAL_KEYS[category]))} | "
          f"{TREATMENT_TEXT[TREATMENTS[category]]} |" for category in Category),
        "",
        "Whatever its key, a value that is an e-mail address becomes its email pseudonym, and a value that is an IP",
        "address, or a text holding an e-mail or IP address somewhere, is dropped (so is a key that is one). A",
        "tenant may keep keys it declares non-personal or drop others (`caliper-pipeline clients extensions`); the",
        "value rule still applies to a kept key. The raw archive keeps the event as sent.",
        "",
        "## Which Caliper version",
        "",
        "`caliper_version` (since learning_fact v6) is `1.1` or `1.2`, the version the event's `@context` names",
        "(the Caliper IRI, or the last entry of a context list; http or https). Caliper 1.1 senders (Canvas Live",
        "Events, the IMS 1.1 sensors) put the v1p1 context on every event, and the gateway refuses a 1.1 event",
        "without it, so an event without a context is 1.2, as are the facts written before the column existed",
        "(migration 012 gives them `1.2`: only 1.2 was accepted then). The other fields of a 1.1 event are",
        "mapped by the same rules as a 1.2 one.",
        "",
        "## Filled the same way for every source",
        "",
        "| fact field | type | how |",
        "| --- | --- | --- |",
    ]
    fields = dataclasses.fields(LearningFact)
    for field in fields:
        if field.name in _FROM_ENVELOPE:
            lines.append(f"| `{field.name}` | {_type_name(hints[field.name])} | {_FROM_ENVELOPE[field.name]} |")
    lines += [
        "",
        "## Mapped from each source's payload (a dash: that source has no such field)",
        "",
        "| fact field | type | " + " | ".join(title for title, _ in columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for field in fields:
        if field.name in _FROM_ENVELOPE:
            continue
        cells = ["<br>".join(f"`{p}`" for p in sources.get(field.name, [])) or "—" for _, sources in columns]
        lines.append(f"| `{field.name}` | {_type_name(hints[field.name])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--write" in args:
        PAGE.write_text(render())
        print(f"wrote {PAGE}")
    else:
        print(render(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
