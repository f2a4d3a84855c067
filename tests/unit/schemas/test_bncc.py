"""BNCC skill codes: real codes of every stage parse into their parts; unknown shapes are refused clearly."""

from __future__ import annotations

import pytest

from schemas.bncc import BnccStage, parse_bncc
from schemas.errors import InvalidSkillCodeError


@pytest.mark.parametrize(("code", "stage", "year_group", "component", "number"), [
    ("EI01EO01", BnccStage.INFANT, "EI01", "EO", "01"),       # bebês: o eu, o outro e o nós
    ("EI02CG03", BnccStage.INFANT, "EI02", "CG", "03"),       # corpo, gestos e movimentos
    ("EI03TS02", BnccStage.INFANT, "EI03", "TS", "02"),       # traços, sons, cores e formas
    ("EI03EF09", BnccStage.INFANT, "EI03", "EF", "09"),       # escuta, fala, pensamento e imaginação
    ("EI03ET07", BnccStage.INFANT, "EI03", "ET", "07"),       # espaços, tempos, quantidades
    ("EF01LP01", BnccStage.ELEMENTARY, "EF01", "LP", "01"),
    ("EF05MA01", BnccStage.ELEMENTARY, "EF05", "MA", "01"),
    ("EF15LP01", BnccStage.ELEMENTARY, "EF15", "LP", "01"),   # span 1st-5th year
    ("EF12LP01", BnccStage.ELEMENTARY, "EF12", "LP", "01"),
    ("EF35LP01", BnccStage.ELEMENTARY, "EF35", "LP", "01"),
    ("EF67LP01", BnccStage.ELEMENTARY, "EF67", "LP", "01"),
    ("EF69AR31", BnccStage.ELEMENTARY, "EF69", "AR", "31"),
    ("EF89LP01", BnccStage.ELEMENTARY, "EF89", "LP", "01"),
    ("EF06GE01", BnccStage.ELEMENTARY, "EF06", "GE", "01"),
    ("EF07HI01", BnccStage.ELEMENTARY, "EF07", "HI", "01"),
    ("EF08CI01", BnccStage.ELEMENTARY, "EF08", "CI", "01"),
    ("EF09EF01", BnccStage.ELEMENTARY, "EF09", "EF", "01"),   # Educação Física
    ("EF06LI01", BnccStage.ELEMENTARY, "EF06", "LI", "01"),   # Língua Inglesa
    ("EF01ER01", BnccStage.ELEMENTARY, "EF01", "ER", "01"),   # Ensino Religioso
    ("EF05CO01", BnccStage.ELEMENTARY, "EF05", "CO", "01"),   # Computação
    ("EM13LGG101", BnccStage.SECONDARY, "EM13", "LGG", "101"),
    ("EM13MAT302", BnccStage.SECONDARY, "EM13", "MAT", "302"),
    ("EM13CNT201", BnccStage.SECONDARY, "EM13", "CNT", "201"),
    ("EM13CHS106", BnccStage.SECONDARY, "EM13", "CHS", "106"),
    ("EM13LP01", BnccStage.SECONDARY, "EM13", "LP", "01"),
])
def test_real_codes_parse_into_their_parts(code: str, stage: BnccStage, year_group: str, component: str,
                                           number: str) -> None:
    skill = parse_bncc(code)
    assert (skill.code, skill.stage, skill.year_group, skill.component, skill.number) == (
        code, stage, year_group, component, number)


def test_case_and_blanks_are_normalized() -> None:
    assert parse_bncc("  ef05ma01 ").code == "EF05MA01"
    assert parse_bncc("em13lgg101").component == "LGG"


@pytest.mark.parametrize(("code", "reason"), [
    ("EF10MA01", "elementary year"),
    ("EF05XX01", "elementary component"),
    ("EI04EO01", "infant age group"),
    ("EI03MA01", "infant field of experience"),
    ("EM12LGG101", "EM13"),
    ("EM13LGG10", "three digits"),
    ("EM13ABC101", "secondary area"),
    ("EF05MA001", "two digits"),
    ("MA01", "shape"),
    ("", "shape"),
])
def test_unknown_shapes_are_refused_with_a_reason(code: str, reason: str) -> None:
    with pytest.raises(InvalidSkillCodeError) as raised:
        parse_bncc(code)
    assert reason in str(raised.value)
    assert raised.value.code == code
