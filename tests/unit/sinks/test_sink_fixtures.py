"""The session engine of the sink's tests: a test database copied from the template is what the migrations
build, and holds nothing a previous test left."""

from __future__ import annotations

from sink_fixtures import Seed, SharedEngine, insert, make_fact

from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import Layout, apply_migrations

SCHEMA = ("SELECT name, engine, replaceAll(create_table_query, {db:String} || '.', 'db.') FROM system.tables "
          "WHERE database = {db:String} ORDER BY name")


def test_a_copied_database_is_the_migrated_schema(chdb_engine: SharedEngine) -> None:
    copied = connect(chdb_engine.fresh_database("copied"))
    try:
        migrated = connect(chdb_engine.settings("migrated"), create_database=True)
        try:
            apply_migrations(migrated, Layout("migrated"))
            assert copied.query_rows(SCHEMA, {"db": "copied"})[1] == migrated.query_rows(SCHEMA, {"db": "migrated"})[1]
            assert apply_migrations(copied, Layout("copied")) == []  # every migration recorded as applied
        finally:
            migrated.close()
    finally:
        copied.close()


def test_a_fresh_database_holds_no_rows_and_no_other_database_of_a_previous_test(chdb_engine: SharedEngine) -> None:
    first = connect(chdb_engine.fresh_database("learning"))
    try:
        insert(first, [make_fact(1)], "a")
        first.command("CREATE DATABASE left_behind")
    finally:
        first.close()
    second = connect(chdb_engine.fresh_database("learning"))
    try:
        assert second.scalar("SELECT count() FROM learning.learning_facts") == 0
        assert second.scalar("SELECT count() FROM system.databases WHERE name = 'left_behind'") == 0
        insert(second, [make_fact(1)], "a")  # the same deduplication token loads again: a new table
        assert second.scalar("SELECT count() FROM learning.learning_facts") == 1
    finally:
        second.close()


def test_a_copy_a_test_only_read_is_kept_and_one_it_changed_is_made_anew(chdb_engine: SharedEngine) -> None:
    def uuid_of_the_fact_table() -> str:
        client = connect(chdb_engine.fresh_database("learning"))
        try:
            return str(client.scalar("SELECT uuid FROM system.tables "
                                     "WHERE database = 'learning' AND name = 'learning_facts'"))
        finally:
            client.close()

    read = uuid_of_the_fact_table()
    assert uuid_of_the_fact_table() == read  # nothing changed: the same copy
    client = connect(chdb_engine.fresh_database("learning"))
    try:
        insert(client, [make_fact(1)], "kept-token")
        client.command("TRUNCATE TABLE learning.learning_facts")  # no row left, but the token was seen
    finally:
        client.close()
    client = connect(chdb_engine.fresh_database("learning"))
    try:
        assert client.scalar("SELECT uuid FROM system.tables "
                             "WHERE database = 'learning' AND name = 'learning_facts'") != read
        insert(client, [make_fact(1)], "kept-token")
        assert client.scalar("SELECT count() FROM learning.learning_facts") == 1
        client.command("CREATE TABLE default.left_behind (x UInt8) ENGINE = Memory")
    finally:
        client.close()
    client = connect(chdb_engine.fresh_database("learning"))
    try:
        assert client.scalar("SELECT count() FROM system.tables WHERE database = 'default'") == 0
    finally:
        client.close()


def test_a_seeded_copy_is_kept_for_the_next_test_of_the_same_seed_that_only_read(chdb_engine: SharedEngine) -> None:
    def one_fact(client: ClickHouse) -> None:
        insert(client, [make_fact(1)], "seeded")

    def facts_and_table(seed: Seed | None) -> tuple[int, str]:
        client = connect(chdb_engine.fresh_database("learning", seed))
        try:
            return (int(client.scalar("SELECT count() FROM learning.learning_facts")),
                    str(client.scalar("SELECT uuid FROM system.tables "
                                      "WHERE database = 'learning' AND name = 'learning_facts'")))
        finally:
            client.close()

    count, seeded = facts_and_table(one_fact)
    assert count == 1
    assert facts_and_table(one_fact) == (1, seeded)  # only read: the same copy, seeded once
    count, unseeded = facts_and_table(None)  # another seed (none): a copy of its own
    assert count == 0 and unseeded != seeded
    count, reseeded = facts_and_table(one_fact)
    assert count == 1 and reseeded not in (seeded, unseeded)
    client = connect(chdb_engine.fresh_database("learning", one_fact))
    try:
        insert(client, [make_fact(2)], "a test's own")
    finally:
        client.close()
    count, after_a_change = facts_and_table(one_fact)  # the test changed the rows: seeded anew
    assert count == 1 and after_a_change != reseeded
