"""Helpers for the pydantic payload models (hub, Timeback): before-validators that name the offending field by
its contract path and hold every value to the bounds of ``schemas.limits``, and the translation of pydantic's
errors into ``FieldProblem``s.

A model validated with ``context=validation_context(limits)`` applies ``limits``; validated without a context it
applies ``STORAGE_LIMITS`` (what the store can hold at all), so a stage re-reading already accepted events never
refuses what a gateway with a wider configured window accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BeforeValidator, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from schemas.errors import FieldProblem
from schemas.limits import STORAGE_LIMITS, TimeWindow, ValidationLimits, int64_problem, number_problem, text_problem

__all__ = [
    "Bound", "checked", "context_of", "dotted_path", "field_problem", "int64_bound", "number_bound", "optional",
    "problems_of", "text_bound", "time_bound", "validation_context",
]


def field_problem(path: str, message: str) -> PydanticCustomError:
    """The field and the rule it breaks; never the value (a reason may be read where the value may not)."""
    return PydanticCustomError("hub_value", "{path} {message}", {"path": path, "message": message})


# --- bounds: what a read value must also satisfy to be loadable (schemas.limits) ------------------------------

_STORAGE_CONTEXT: dict[str, Any] = {"limits": STORAGE_LIMITS, "window": STORAGE_LIMITS.time_window()}
Bound = Callable[[Any, dict[str, Any]], "str | None"]


def text_bound(result: Any, context: dict[str, Any]) -> str | None:
    if not isinstance(result, str) or not context["limits"].forbid_control_characters:
        return None
    return text_problem(result)


def int64_bound(result: Any, context: dict[str, Any]) -> str | None:
    return int64_problem(result)


def number_bound(result: Any, context: dict[str, Any]) -> str | None:
    limits: ValidationLimits = context["limits"]
    return number_problem(result, limits)


def time_bound(result: Any, context: dict[str, Any]) -> str | None:
    window: TimeWindow = context["window"]
    return window.problem(result)


def context_of(info: ValidationInfo) -> dict[str, Any]:
    """The limits (``"limits"``) and event-time window (``"window"``) a validation applies."""
    context = info.context
    return context if isinstance(context, dict) and "window" in context else _STORAGE_CONTEXT


def _read_and_bound(path: str, message: str, read: Callable[[Any], Any], bound: Bound | None,
                    value: Any, info: ValidationInfo) -> Any:
    result = read(value)
    if result is None:
        raise field_problem(path, message)
    if bound is not None:
        problem = bound(result, context_of(info))
        if problem is not None:
            raise field_problem(path, problem)
    return result


def checked(path: str, message: str, read: Callable[[Any], Any], bound: Bound | None = None) -> BeforeValidator:
    """A before-validator that reads a value with ``read`` (None = unreadable) and names the field if not, or if
    the value read is out of ``bound``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise field_problem(path, "not informed")
        return _read_and_bound(path, message, read, bound, value, info)

    return BeforeValidator(check)


def optional(path: str, message: str, read: Callable[[Any], Any], bound: Bound | None = None) -> BeforeValidator:
    """Like ``_checked`` but a null stays null (the field is optional)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        return _read_and_bound(path, message, read, bound, value, info)

    return BeforeValidator(check)


def validation_context(limits: ValidationLimits, now: datetime | None = None) -> dict[str, Any]:
    """The pydantic validation context that makes the models (hub, Timeback) apply ``limits``."""
    return {"limits": limits, "window": limits.time_window(now)}


def dotted_path(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as the validators' path: ``generated.items[1].value``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def problems_of(error: ValidationError, required_paths: tuple[str, ...] = ()) -> list[FieldProblem]:
    """Translate pydantic errors into contract paths; a missing parent names its required descendants."""
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for detail in error.errors(include_url=False):
        path = dotted_path(detail["loc"])
        missing = detail["type"] == "missing" or detail.get("input", "") is None
        if missing:
            paths = [p for p in required_paths if p.startswith(path + ".")] or [path]
            for required in paths:
                if required not in seen:
                    seen.add(required)
                    problems.append(FieldProblem(required, f"Field {required} not informed", missing=True))
            continue
        if path in seen:
            continue
        seen.add(path)
        if detail["type"] == "hub_value":
            message = detail["msg"]
        elif detail["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"{path or '$'} must be a JSON object"
        else:
            message = f"{path or '$'}: {detail['msg']}"
        problems.append(FieldProblem(path or "$", message))
    return problems
