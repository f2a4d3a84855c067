"""docs/fact-mapping.md is generated from the normalizers' rules: it must match the code."""

from __future__ import annotations

from streams.normalizers.mapping_doc import PAGE, render


def test_fact_mapping_page_is_current() -> None:
    assert PAGE.read_text() == render(), "stale: run python -m streams.normalizers.mapping_doc --write"


def test_every_seed_field_has_a_column() -> None:
    page = render()
    for seed_path in ("object.assignable.skillCode", "generated.trys", "object.percentReading", "object.totalTime",
                      "object.completionType", "object.finished", "object.lastTime", "generated.items",
                      "object.course.name", "object.activity.name", "object.app.name", "actor.id"):
        assert f"`{seed_path}`" in page
