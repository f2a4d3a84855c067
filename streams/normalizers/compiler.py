"""Compile a ``ConversionSet`` into one plain Python function, once, when the set is built.

``ConversionSet.convert_interpreted`` walks the rules one by one: it splits nothing at run time (the paths are
pre-split) but still, for every rule of every event, loops over the path's keys, tests the destination, checks
the rule's flags and, for the remainder, walks the rule tree with sets of consumed indexes. That generic walk
cost ~60 % of normalizing a generic Caliper event.

``compile_conversion`` writes the same walk out as straight-line code for one set (the generated source is kept
on the function as ``__source__``, to read or debug):

- every object on a rule's path (``object``, ``object.assignable``...) is looked up once per event, into a local
  (``None`` when it is absent or not an object: the interpreted walk then reads ``None`` as well);
- each rule becomes an ``if`` block with its destination test, its transform call and a local flag set when it
  consumes its value;
- the remainder is copied only along the branches where some rule consumed a value, with the leftover and
  empty-object rules of the interpreted ``_remainder``.

The semantics are those of ``convert_interpreted`` exactly (``tests/unit/streams/test_compiled_conversions.py`` compares
both on generated documents); the rules stay the one declarative description.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from streams.normalizers.base import FieldRule, _PathNode

Converter = Callable[[dict[str, Any], tzinfo], tuple[dict[str, Any], dict[str, Any]]]


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def compile_conversion(name: str, rules: tuple[FieldRule, ...], paths: _PathNode, consumed_marker: str) -> Converter:
    """The conversion of ``rules`` (their tree ``paths``) as one function ``convert(document, zone)``."""
    namespace: dict[str, Any] = {}
    out = _Writer()
    out.line(0, "def convert(document, zone):")
    out.line(1, "root = document if type(document) is dict else None")
    # one local per object on a path: the value at that prefix if it is a dict, else None
    prefixes: dict[tuple[str, ...], str] = {(): "root"}
    for rule in rules:
        for length in range(1, len(rule.keys)):
            prefix = rule.keys[:length]
            if prefix in prefixes:
                continue
            parent = prefixes[prefix[:-1]]
            local = prefixes[prefix] = f"p{len(prefixes)}"
            out.line(1, f"{local} = {parent}.get({prefix[-1]!r}) if {parent} is not None else None")
            out.line(1, f"if type({local}) is not dict:")
            out.line(2, f"{local} = None")
    consuming = [index for index, rule in enumerate(rules) if rule.consume]
    for index in consuming:
        out.line(1, f"c{index} = False")
    out.line(1, "values = {}")
    for index, rule in enumerate(rules):
        _rule(out, namespace, index, rule, prefixes[rule.keys[:-1]], consumed_marker)
    if not consuming:
        out.line(1, "return values, dict(document)")
    else:
        out.line(1, f"if not ({' or '.join(f'c{index}' for index in consuming)}):")
        out.line(2, "return values, dict(document)")
        out.line(1, "rest = dict(document)")
        _remainder(out, namespace, rules, paths, "rest", 1, set(consuming), [0])
        out.line(1, "return values, rest")
    source = "\n".join(out.lines) + "\n"
    code = compile(source, f"<conversion {name}>", "exec")
    exec(code, namespace)  # the source is generated above from the rules (module constants), nothing else
    converter: Converter = namespace["convert"]
    converter.__source__ = source  # type: ignore[attr-defined]
    return converter


def _rule(out: _Writer, namespace: dict[str, Any], index: int, rule: FieldRule, parent: str,
          consumed_marker: str) -> None:
    destination = rule.destination
    out.line(1, f"# rule {index}: {rule.source} -> {destination}")
    depth = 1
    if destination is not None and destination != consumed_marker:  # CONSUMED never lands in values
        out.line(depth, f"if {destination!r} not in values:")
        depth += 1
    out.line(depth, f"value = {parent}.get({rule.keys[-1]!r}) if {parent} is not None else None")
    out.line(depth, "if value is not None:")
    depth += 1
    if rule.transform is None:
        result = "value"
    else:
        namespace[f"T{index}"] = rule.transform
        out.line(depth, f"result = T{index}(value, zone)" if rule.zoned else f"result = T{index}(value)")
        out.line(depth, "if result is not None:")
        depth += 1
        result = "result"
    if destination is None:  # several fields at once, unless any of them is already filled
        out.line(depth, f"for name in {result}:")
        out.line(depth + 1, "if name in values:")
        out.line(depth + 2, "break")
        out.line(depth, "else:")
        out.line(depth + 1, f"values.update({result})")
        if rule.consume:
            out.line(depth + 1, f"c{index} = True")
        return
    if destination != consumed_marker:
        out.line(depth, f"values[{destination!r}] = {result}")
    out.line(depth, f"c{index} = True" if rule.consume else "pass")


def _remainder(out: _Writer, namespace: dict[str, Any], rules: tuple[FieldRule, ...], node: _PathNode,
               container: str, depth: int, consuming: set[int], counter: list[int]) -> None:
    """The interpreted ``_remainder`` of ``node``'s children in ``container`` (a copy owned by this code)."""
    for key, child in node.children.items():
        below = sorted(child.below & consuming)
        if not below:  # nothing under this key can be consumed: it always stays as sent
            continue
        out.line(depth, f"if {key!r} in {container} and ({' or '.join(f'c{index}' for index in below)}):")
        ending = [index for index in child.ending if index in consuming]  # rule order: the first consumed wins
        keyword = "if"
        for index in ending:
            out.line(depth + 1, f"{keyword} c{index}:")
            leftover = rules[index].leftover
            if leftover is None:
                out.line(depth + 2, f"del {container}[{key!r}]")
            else:
                namespace[f"L{index}"] = leftover
                out.line(depth + 2, f"kept = L{index}({container}[{key!r}])")
                out.line(depth + 2, "if kept:")
                out.line(depth + 3, f"{container}[{key!r}] = kept")
                out.line(depth + 2, "else:")
                out.line(depth + 3, f"del {container}[{key!r}]")
            keyword = "elif"
        if child.children:
            counter[0] += 1
            nested = f"n{counter[0]}"
            if ending:
                out.line(depth + 1, f"elif type({container}[{key!r}]) is dict:")
            else:
                out.line(depth + 1, f"if type({container}[{key!r}]) is dict:")
            out.line(depth + 2, f"{nested} = dict({container}[{key!r}])")
            _remainder(out, namespace, rules, child, nested, depth + 2, consuming, counter)
            out.line(depth + 2, f"if {nested}:")
            out.line(depth + 3, f"{container}[{key!r}] = {nested}")
            out.line(depth + 2, "else:")
            out.line(depth + 3, f"del {container}[{key!r}]")
        elif not ending:  # pragma: no cover - a node with consuming rules below has an ending rule or children
            out.line(depth + 1, "pass")
