"""The root cause of a failed job, chosen from what each worker recorded."""

import json

from sparsetrain import failures


def _record(directory, monkeypatch, rank, error, at):
    monkeypatch.setenv(failures.FAILURES_ENV, str(directory))
    monkeypatch.setattr(failures.time, "time", lambda: at)
    try:
        raise error
    except BaseException as raised:
        failures.record(raised, rank)


def test_a_consequence_reported_first_does_not_hide_the_cause(tmp_path, monkeypatch):
    gloo = RuntimeError("[pair.cc:545] Read error [127.0.0.1]:21420: Connection reset by peer")
    _record(tmp_path, monkeypatch, 0, gloo, at=100.0)
    _record(tmp_path, monkeypatch, 1, RuntimeError("boom"), at=100.5)
    cause = failures.root_cause(tmp_path, range(2), signals={})
    assert (cause.rank, cause.description) == (1, "RuntimeError: boom")
    assert 'raise error' in cause.traceback and json.loads((tmp_path / "rank0.json").read_text())["communication"]


def test_the_earliest_of_several_causes_wins(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, 1, FloatingPointError("step 7 holds NaN"), at=5.0)
    _record(tmp_path, monkeypatch, 0, FloatingPointError("step 7 holds NaN (rank 0)"), at=4.0)
    assert failures.root_cause(tmp_path, range(2), signals={}).description == "FloatingPointError: step 7 holds NaN (rank 0)"


def test_a_killed_rank_leaves_no_record_and_is_the_cause(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, 0, RuntimeError("gloo: Connection closed by peer"), at=1.0)
    assert failures.root_cause(tmp_path, range(2), signals={1: "SIGKILL"}).description == "rank 1 killed by SIGKILL"
    assert failures.root_cause(tmp_path, range(2), signals={}).description.startswith("rank 1 ended without an error")


def test_only_communication_errors_report_the_first(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, 1, RuntimeError("Connection closed by peer"), at=3.0)
    _record(tmp_path, monkeypatch, 0, RuntimeError("Connection reset by peer"), at=2.0)
    assert failures.root_cause(tmp_path, range(2), signals={}).description == "RuntimeError: Connection reset by peer"


def test_without_a_launcher_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(failures.FAILURES_ENV, raising=False)
    failures.record(RuntimeError("x"), 0)
    assert not list(tmp_path.iterdir())
