"""BNCC (Base Nacional Comum Curricular) skill codes: parse, normalize and split into their parts.

Shapes (with real examples):

- infant education ``EI`` + age group ``01``-``03`` + field of experience ``EO|CG|TS|EF|ET`` + two digits:
  ``EI03EO01``
- elementary ``EF`` + year ``01``-``09`` or a span (``12``, ``15``, ``35``, ``67``, ``69``, ``89``) + component
  ``LP|MA|CI|GE|HI|AR|EF|LI|ER|CO`` + two digits: ``EF05MA01``, ``EF15LP01``, ``EF69AR31``
- secondary ``EM13`` + area ``LGG|MAT|CNT|CHS`` + three digits (``EM13LGG101``), or Portuguese ``LP`` + two
  digits (``EM13LP01``)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import InvalidSkillCodeError


class BnccStage(StrEnum):
    INFANT = "EI"
    ELEMENTARY = "EF"
    SECONDARY = "EM"


INFANT_FIELDS = {"EO", "CG", "TS", "EF", "ET"}
ELEMENTARY_COMPONENTS = {"LP", "MA", "CI", "GE", "HI", "AR", "EF", "LI", "ER", "CO"}
ELEMENTARY_YEAR_SPANS = {"12", "15", "35", "67", "69", "89"}
SECONDARY_AREAS = {"LGG", "MAT", "CNT", "CHS"}

_SHAPE = re.compile(r"^(EI|EF|EM)(\d{2})([A-Z]{2,3})(\d{2,3})$")


@dataclass(frozen=True, slots=True)
class BnccSkill:
    code: str
    stage: BnccStage
    year_group: str  # stage + year/age/span, e.g. "EF15", "EM13", "EI03"
    component: str
    number: str


def parse_bncc(raw: str) -> BnccSkill:
    """Parse a BNCC skill code (any case, surrounding blanks ignored). Raises InvalidSkillCodeError."""
    code = raw.strip().upper()
    match = _SHAPE.match(code)
    if match is None:
        raise InvalidSkillCodeError(raw, "does not have the shape EI03EO01, EF05MA01 or EM13LGG101")
    stage_text, digits, component, number = match.groups()
    stage = BnccStage(stage_text)
    if stage is BnccStage.INFANT:
        _require(raw, digits in {"01", "02", "03"}, "infant age group must be 01, 02 or 03")
        _require(raw, component in INFANT_FIELDS, f"infant field of experience must be one of {_listed(INFANT_FIELDS)}")
        _require(raw, len(number) == 2, "infant codes end with two digits")
    elif stage is BnccStage.ELEMENTARY:
        is_year = "01" <= digits <= "09"
        _require(raw, is_year or digits in ELEMENTARY_YEAR_SPANS,
                 f"elementary year must be 01-09 or a span {_listed(ELEMENTARY_YEAR_SPANS)}")
        _require(raw, component in ELEMENTARY_COMPONENTS,
                 f"elementary component must be one of {_listed(ELEMENTARY_COMPONENTS)}")
        _require(raw, len(number) == 2, "elementary codes end with two digits")
    else:
        _require(raw, digits == "13", "secondary codes start with EM13")
        if component == "LP":
            _require(raw, len(number) == 2, "EM13LP codes end with two digits")
        else:
            _require(raw, component in SECONDARY_AREAS,
                     f"secondary area must be one of {_listed(SECONDARY_AREAS | {'LP'})}")
            _require(raw, len(number) == 3, "secondary area codes end with three digits")
    return BnccSkill(code=code, stage=stage, year_group=stage_text + digits, component=component, number=number)


def _require(raw: str, condition: bool, reason: str) -> None:
    if not condition:
        raise InvalidSkillCodeError(raw, reason)


def _listed(values: set[str]) -> str:
    return ", ".join(sorted(values))
