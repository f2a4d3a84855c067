"""``caliper-pipeline replay`` answers a request it cannot carry out with one line, never a traceback."""

from __future__ import annotations

import pytest

from caliper_pipeline.cli import main


@pytest.mark.parametrize("args, message", [
    (["--topic", "caliper.rejected"], "--to-topic is needed to replay 'caliper.rejected'"),
    (["--from-offset", "5", "--to-offset", "2"], "--from-offset 5 is after --to-offset 2"),
    (["--partition", "-1"], "--partition must be 0 or more, not -1"),
    ([], "cannot reach Kafka at 127.0.0.1:1"),
    (["--reason", "x"], "--tenant, --job, --reason, --reason-code and --stage select failed events: add --from-failed"),
    (["--reason-code", "field_missing"], "--tenant, --job, --reason, --reason-code and --stage select failed events"),
    (["--from-failed", "--job", "j"], "the sink at http://127.0.0.1:1/admin/failed-events is not reachable"),
])
def test_replay_refuses_in_one_line(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CALIPER_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("CALIPER_SINK__SINK_URL", "http://127.0.0.1:1")
    assert main(["replay", *args]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"caliper-pipeline replay: {message}"), error
    assert len(error.splitlines()) == 1
