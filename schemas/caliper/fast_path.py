"""The validator's fast path: a yes-or-don't-know check of one envelope item, generated once from the rule tables.

The engine (``schemas.caliper.validator``) walks an item through one checker call per property, building a dotted
path for each and collecting every problem: most of its time is that interpretive bookkeeping, and almost every
item a gateway sees is valid. ``accepts(item, walk)`` answers True only for an item on which the engine would
report no problem and record no optional null, and False ("don't know") otherwise: the caller then runs the
engine, which names every problem. A wrong False costs time, never correctness; a wrong True would accept an
invalid event, so every test here is as strict as the engine's or stricter, never looser:

- At import, the merged rule table of every Caliper type (``validator.merged_rules``, the engine's own merge)
  is turned into the Python source of one function per type, list and record, with the common case of each
  scalar kind inlined (a string free of control characters, an IRI, a term, a number in range, an event time
  inside the window); a value outside that common case is handed to the engine's own checker for that kind.
  The source is compiled once (``exec``), so checking an item is straight-line code with no path strings.
- Anything unusual answers False: a ``null`` anywhere in an object (required, optional or unknown), an unknown
  type, a property that may be a misspelling, a depth at the limit, a check of ``schemas.caliper.fact_paths``
  that reports something.
- The months of the items' ``eventTime`` (the fact table's partitions) are recorded as the engine records them.

``tests/unit/schemas/test_validation_fast_path.py`` mutates valid events (every property removed, nulled, retyped,
pushed out of bounds...) and checks that the fast path never accepts what the engine refuses, and that it does
accept the common shapes; ``caliper-pipeline bench gateway-steps`` prints both speeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from schemas.caliper import terms
from schemas.caliper.entity_rules import Kind, ListOf, Ref, Rule, Scalar, Term
from schemas.caliper.fact_paths import check_fact_paths
from schemas.caliper.scalars import _DATETIME_RE, SCALAR_CHECKERS, Walk
from schemas.caliper.validator import TIMEBACK_EVENTS, is_event, merged_rules, transposition_of
from schemas.coerce import parse_time

__all__ = ["accepts"]

Predicate = Callable[[Any, Walk], bool]
_EventTerms = tuple[frozenset[str], frozenset[str], Mapping[str, tuple[str, ...]]]  # actions, profiles, required
_TYPE_KEYS: Final = frozenset({"type", "action", "profile"})  # checked by the engine itself, never misspellings


def _by_checker(kind: Kind) -> Predicate:
    """The engine's own checker of a scalar kind, asked with an empty path: True when it reported nothing."""
    check = SCALAR_CHECKERS[kind]

    def accepts_value(value: Any, walk: Walk) -> bool:
        problems = walk.problems
        before = len(problems)
        check(value, "", walk)
        return len(problems) == before

    return accepts_value


_datetime_match: Final = _DATETIME_RE.fullmatch


def _event_time(value: Any, walk: Walk) -> bool:
    if type(value) is str and _datetime_match(value) is not None:
        moment = parse_time(value)
        window = walk.window
        if moment is not None and window.earliest <= moment <= window.latest:
            return True
    return _CHECK_EVENT_TIME(value, walk)


_CHECK_EVENT_TIME: Final = _by_checker(Kind.EVENT_TIME)


def _item_event_time(value: Any, walk: Walk) -> bool:
    """``_event_time`` for the ``eventTime`` of an envelope item: also records its month, as the engine does."""
    if type(value) is str and _datetime_match(value) is not None:
        moment = parse_time(value)
        window = walk.window
        if moment is not None and window.earliest <= moment <= window.latest:
            walk.months.add(moment.year * 100 + moment.month)  # toYYYYMM: parse_time gives UTC already
            return True
    return False  # not the common case: the engine decides (and counts the month)


# The inlined common case of each scalar kind (``{x}``: the value), else the engine's checker ``check_<kind>``.
# ``str.isprintable()`` (C, about a nanosecond a character) is False for every control character, lone surrogate
# and whitespace character but the ASCII space (Unicode "Other" and "Separator" categories): a printable string
# holds nothing ``schemas.limits.FORBIDDEN_CHARACTER`` forbids, and without " " nothing ``\S`` refuses. It also
# refuses a few characters the engine accepts (a soft hyphen, a no-break space...): those go to the engine. The
# engine's regular expressions cost ~0.6 us on an 80-character IRI; this, ~0.1 us.
_INLINE: Final[Mapping[Kind, str]] = {
    Kind.STRING: "type({x}) is str and {x}.isprintable()",
    Kind.IRI: "type({x}) is str and {x}.startswith(common_schemes) and len({x}) > 4 and {x}.isprintable() "
              "and ' ' not in {x}",
    Kind.URN_UUID: "type({x}) is str and {x}.startswith('urn:uuid:') and len({x}) > 9 and {x}.isprintable() "
                   "and ' ' not in {x}",
    Kind.EMAIL: "type({x}) is str and {x} != '' and {x}.isprintable() and ' ' not in {x}",
    Kind.NUMBER: "(type({x}) is int or type({x}) is float) and walk.min_abs <= {x} <= walk.max_abs",
    Kind.CONTEXT: "type({x}) is str and {x} in contexts",
}
# IRIs of these schemes match the engine's IRI pattern (a scheme, ":", one or more non-space characters) once they
# are printable, space-free and longer than "urn:"
_COMMON_SCHEMES: Final = ("https://", "http://", "urn:")


class _Source:
    """The generated module: function sources, and the objects they name."""

    def __init__(self) -> None:
        self.functions: list[str] = []
        self.names: dict[str, Any] = {
            "common_schemes": _COMMON_SCHEMES, "contexts": terms.ACCEPTED_CONTEXTS, "event_time": _event_time,
            "item_event_time": _item_event_time, "no_misspelling": _no_misspelling, "event_terms": _event_terms,
            **{f"check_{kind.name.lower()}": _by_checker(kind) for kind in Kind},
        }
        self._made: dict[Any, str] = {}

    def constant(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def expression(self, rule: Rule, x: str) -> str:
        """A Python expression, true when the value named ``x`` (not None) satisfies ``rule``."""
        if isinstance(rule, Scalar):
            fallback = f"check_{rule.kind.name.lower()}({x}, walk)"
            if rule.kind is Kind.EVENT_TIME:
                return f"event_time({x}, walk)"
            inline = _INLINE.get(rule.kind)
            return f"({inline.format(x=x)} or {fallback})" if inline else fallback
        if isinstance(rule, Term):
            return f"(type({x}) is str and {x} in {self.constant('term', rule.values)})"
        if isinstance(rule, Ref):
            embedded = f"type({x}) is dict and {self._ref_function(rule)}({x}, walk)"
            if not rule.iri_allowed:
                return f"({embedded})"
            return f"({embedded} or {self.expression(Scalar(Kind.IRI), x)})"
        if isinstance(rule, ListOf):
            return f"(type({x}) is list and {self._list_function(rule)}({x}, walk))"
        return f"(type({x}) is dict and {self.object_function(id(rule), rule.properties, rule.required)}({x}, walk))"

    def _ref_function(self, rule: Ref) -> str:
        key = ("ref", rule.types)
        if key not in self._made:
            name = self._made[key] = f"ref{len(self._made)}"
            subtypes = terms.entity_subtypes(*rule.types)
            assert not subtypes & set(terms.EVENT_TYPES), "an event inside an item: see item_event_time"
            allowed = self.constant("allowed", subtypes)
            self.functions.append(
                f"def {name}(v, walk):\n"
                f"    name = v.get('type')\n"
                f"    check = types.get(name) if type(name) is str and name in {allowed} else None\n"
                f"    return check is not None and check(v, walk)\n")
        return self._made[key]

    def _list_function(self, rule: ListOf) -> str:
        key = ("list", id(rule))
        if key not in self._made:
            name = self._made[key] = f"list{len(self._made)}"
            self.functions.append(
                f"def {name}(v, walk):\n"
                f"    if walk.depth >= walk.max_depth:\n        return False\n"
                f"    walk.depth += 1\n"
                f"    for y in v:\n"
                f"        if y is None or not {self.expression(rule.item, 'y')}:\n            return False\n"
                f"    walk.depth -= 1\n"
                f"    return True\n")
        return self._made[key]

    def object_function(self, key: object, rules: Mapping[str, Rule], required: tuple[str, ...],
                        type_name: str | None = None, event: _EventTerms | None = None) -> str:
        """The function of a Caliper type (``type_name``: its unknown properties may be misspellings; ``event``:
        its action and profile terms) or of a record (neither)."""
        if key in self._made:
            return self._made[key]
        name = self._made[key] = f"object{len(self._made)}"
        lines = [f"def {name}(v, walk):",
                 "    if walk.depth >= walk.max_depth or None in v.values():\n        return False",
                 "    keys = v.keys()"]
        if type_name is not None:  # an unknown property of a type may be a misspelling; of a record it is not
            known = self.constant("known", frozenset(rules) | _TYPE_KEYS)
            lines.append(f"    if not keys <= {known} and not no_misspelling({type_name!r}, keys - {known}):\n"
                         f"        return False")
        if required:
            lines.append(f"    if not {self.constant('required', frozenset(required))} <= keys:\n        return False")
        lines.append("    walk.depth += 1")
        for index, (property_name, rule) in enumerate(rules.items()):
            x = f"x{index}"
            check = self.expression(rule, x)
            if event and property_name == "eventTime" and rule == Scalar(Kind.EVENT_TIME):
                check = f"item_event_time({x}, walk)"  # an event is an envelope item (refs name entities only)
            lines.append(f"    {x} = v.get({property_name!r})\n"
                         f"    if {x} is not None and not {check}:\n        return False")
        lines.append("    walk.depth -= 1")
        lines.append(f"    return event_terms(v, {self.constant('event', event)})" if event else "    return True")
        self.functions.append("\n".join(lines) + "\n")
        return name


def _no_misspelling(type_name: str, unknown: Any) -> bool:
    return all(transposition_of(type_name, key) is None for key in unknown)


def _event_terms(event: dict[str, Any], terms_of: _EventTerms) -> bool:
    """The engine's ``_check_event_terms`` (action allowed, what it makes required, profile allowed) without a null
    (an event with a null anywhere never gets here)."""
    actions, profiles, action_required = terms_of
    action, profile = event.get("action"), event.get("profile")  # action: required, so present
    if type(action) is not str or action not in actions:
        return False
    for name in action_required.get(action, ()):
        if name not in event:
            return False
    return profile is None or (type(profile) is str and profile in profiles)  # profiles within KNOWN_PROFILES


def _compile() -> dict[str, Predicate]:
    source = _Source()
    functions: dict[str, str] = {}
    for type_name in (*terms.ENTITY_SUPERTYPE, *terms.EVENT_TYPES):
        rules, required, action_required = merged_rules(type_name)
        event_type = terms.EVENT_TYPES.get(type_name)
        event = None if event_type is None else (
            event_type.actions, event_type.profiles & terms.KNOWN_PROFILES, action_required)
        functions[type_name] = source.object_function(type_name, rules, required, type_name, event)
    namespace: dict[str, Any] = dict(source.names)
    exec(compile("\n".join(source.functions), f"<{__name__}: generated>", "exec"), namespace)
    types = {type_name: namespace[function] for type_name, function in functions.items()}
    namespace["types"] = types
    return types


_TYPES: Final = _compile()


def accepts(item: Any, walk: Walk) -> bool:
    """True when the engine would find no problem in the envelope item ``item`` and no optional null (its
    ``eventTime`` month is then in ``walk.months``); False: run the engine. ``walk.depth`` is the item's level."""
    if type(item) is not dict:
        return False
    type_name = item.get("type")
    check = _TYPES.get(type_name) if type(type_name) is str else None
    if check is None or not check(item, walk):
        return False
    if is_event(item) and not (item.get("profile") == terms.TIMEBACK_PROFILE and type_name in TIMEBACK_EVENTS):
        problems = walk.problems
        before = len(problems)
        check_fact_paths(item, "", walk)  # the properties the generic normalizer reads, whatever the type
        if len(problems) != before:
            return False
    return True
