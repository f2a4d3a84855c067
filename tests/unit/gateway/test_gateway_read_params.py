"""``GET /caliper/events`` without a store: query parameters -> ``EventQuery`` (400 naming every bad or unknown
parameter), the reader's page as the answer, 503 without internals when the store cannot answer."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from gateway_doubles import FakeReader, gateway, gateway_settings

from gateway.settings import INGEST_SCOPE, READ_SCOPE
from schemas.read_api import EventQuery, ReadUnavailableError, decode_cursor, encode_cursor

EVENTS = [{"event_id": f"e{i}"} for i in range(5)]


async def test_parameters_become_an_event_query_of_the_callers_tenant(tmp_path: Path) -> None:
    reader = FakeReader(EVENTS)
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        client, _ = gw.add_client("school-a")
        auth = gw.auth(client, {READ_SCOPE})
        response = await gw.client.get("/caliper/events", headers=auth, params={
            "limit": "2", "offset": "1", "sensor": "https://app.example/s", "actorId": "s1",
            "eventType": "GradeEvent", "profile": "GradingProfile", "actorEmail": "s1@example.edu",
            "startDate": "2023-11-15T00:02:00Z", "endDate": "2023-11-15T00:04:00.000"})
        assert response.status == 200
        body = await response.json()
        assert {k: v for k, v in body.items() if k != "next"} == {
            "events": [{"event_id": "e1"}, {"event_id": "e2"}], "limit": 2, "offset": 1, "count": 2,
            "pagination": {"total": 5, "totalPages": 3, "currentPage": 1, "limit": 2}}
        assert reader.queries == [EventQuery(tenant="school-a", limit=2, offset=1, sensor="https://app.example/s",
                                             actor_id="s1", start_ms=1_700_006_520_000, end_ms=1_700_006_640_000,
                                             event_type="GradeEvent", profile="GradingProfile",
                                             actor_email="s1@example.edu")]
        # the next link: the same filters, the reader's cursor instead of the offset
        link = urlsplit(body["next"])
        assert link.path == "/caliper/events"
        assert dict(parse_qsl(link.query)) == {
            "limit": "2", "sensor": "https://app.example/s", "actorId": "s1", "eventType": "GradeEvent",
            "profile": "GradingProfile", "actorEmail": "s1@example.edu", "startDate": "2023-11-15T00:02:00Z",
            "endDate": "2023-11-15T00:04:00.000", "cursor": encode_cursor(3, "fake")}
        followed = await (await gw.client.get(body["next"], headers=auth)).json()
        assert followed["count"] == 2 and reader.queries[-1].after_time_ms == 3
        assert reader.queries[-1].after_event_id == "fake" and reader.queries[-1].event_type == "GradeEvent"
        last = await (await gw.client.get("/caliper/events", headers=auth, params={"offset": "3"})).json()
        assert last["next"] is None and last["count"] == 2
        assert (await (await gw.client.get("/caliper/events", headers=auth)).json())["limit"] == 100
        assert reader.queries[-1] == EventQuery(tenant="school-a")
    assert reader.closed  # the gateway closes its reader when it stops


async def test_bad_and_unknown_parameters_are_400_naming_each(tmp_path: Path) -> None:
    reader = FakeReader(EVENTS)
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        client, _ = gw.add_client("school-a")
        auth = gw.auth(client, {READ_SCOPE})
        cases = {
            "limit=x&startDate=soon": {"limit", "startDate"},
            "limit=0": {"limit"}, "limit=1001": {"limit"}, "limit=5000": {"limit"}, "offset=-1": {"offset"},
            "offset=10000001": {"offset"}, "limit=%D9%A3": {"limit"},  # an Arabic-Indic digit is not an integer
            "startDate=": {"startDate"}, "endDate=": {"endDate"},
            "eventTyp=GradeEvent": {"eventTyp"}, "limit=5&limit=6": {"limit"}, "profile=a&profile=b": {"profile"},
            "cursor=garbage": {"cursor"}, "cursor=": {"cursor"}, "cursor=WzEsMl0": {"cursor"},  # [1,2]: no id
            f"cursor={encode_cursor(5, 'e')}&offset=3": {"offset"}, "sensor=" + "x" * 3000: {"sensor"},
            "actorId=a%00b": {"actorId"},
        }
        bodies = {}
        for query, names in cases.items():
            response = await gw.client.get(f"/caliper/events?{query}", headers=auth)
            assert response.status == 400, query
            bodies[query] = body = await response.json()
            assert {e["path"] for e in body["errors"]} == names, (query, body)
        unknown = bodies["eventTyp=GradeEvent"]["errors"][0]["message"]
        assert "unknown query parameter 'eventTyp'" in unknown and "eventType" in unknown and "cursor" in unknown
        assert reader.queries == []
        assert gw.publisher.rejections == []  # read errors are not rejected events


async def test_unavailable_store_is_503_without_internals(tmp_path: Path) -> None:
    reader = FakeReader(failure=ReadUnavailableError("SELECT secret FROM learning.learning_facts: Code 999"))
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        client, _ = gw.add_client("school-a")
        response = await gw.client.get("/caliper/events", headers=gw.auth(client, {READ_SCOPE}))
        assert response.status == 503 and int(response.headers["Retry-After"]) > 0
        text = await response.text()
        assert "SELECT" not in text and "learning_facts" not in text and "Code 999" not in text


async def test_auth_and_a_gateway_without_reader(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path), reader=FakeReader(EVENTS)) as gw:
        client, _ = gw.add_client("school-a")
        assert (await gw.client.get("/caliper/events")).status == 401
        assert (await gw.client.get("/caliper/events", headers=gw.auth(client, {INGEST_SCOPE}))).status == 403
    async with gateway(gateway_settings(tmp_path)) as gw:
        client, _ = gw.add_client("school-a")
        response = await gw.client.get("/caliper/events", headers=gw.auth(client, {READ_SCOPE}))
        assert response.status == 404 and (await response.json())["status"] == "error"


def test_a_cursor_is_a_position_and_nothing_else() -> None:
    assert decode_cursor(encode_cursor(-5, "urn:uuid:é")) == (-5, "urn:uuid:é")
    for bad in ("", "!!", "W10", "WyJ4IiwieCJd", "x" * 5000, "WzEuNSwiYSJd"):  # [], ["x","x"], [1.5,"a"]
        try:
            decode_cursor(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was taken for a cursor")
