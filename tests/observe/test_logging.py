from __future__ import annotations

import copy
import json
import logging
import pickle
import sys
import threading

import pytest

from reconciler.observe import logging as logs


def test_json_lines_with_bound_run_id_and_masked_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """Logs are JSON lines; a bound run_id appears on every line; secret-looking fields are masked."""
    logs.configure("info", "json")
    log = logs.get_logger("t")
    with logs.bound_contextvars(run_id="r-1"):
        log.info("hello", password="hunter2", db_token="abc", target="t1")
    log.debug("hidden at info level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert line["event"] == "hello" and line["run_id"] == "r-1" and line["target"] == "t1"
    assert line["password"] == "<redacted>" and line["db_token"] == "<redacted>"
    assert "hunter2" not in json.dumps(line)


def test_bound_values_nest_end_with_their_block_and_stay_in_their_thread(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    log = logs.get_logger("t")
    with logs.bound_contextvars(run_id="r-1", mode="dry-run"):
        with logs.bound_contextvars(target="a", mode="apply"):
            log.info("inner")
            log.info("own field wins", target="b")
            other = threading.Thread(target=lambda: log.info("elsewhere"))
            other.start()
            other.join()
        log.info("outer")
    log.info("after")
    lines = {line["event"]: line for line in map(json.loads, capsys.readouterr().err.splitlines())}
    assert (lines["inner"]["run_id"], lines["inner"]["target"], lines["inner"]["mode"]) == ("r-1", "a", "apply")
    assert lines["own field wins"]["target"] == "b"
    assert "run_id" not in lines["elsewhere"]  # a thread starts with nothing bound
    assert lines["outer"]["mode"] == "dry-run" and "target" not in lines["outer"]
    assert "run_id" not in lines["after"]


def test_libraries_log_in_the_same_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """APScheduler's and the HTTP server's own warnings, tracebacks included, are JSON lines like ours (issue:
    plain `apscheduler … skipped` lines and bare tracebacks broke log parsing); below warning they are quiet."""
    logs.configure("info", "json")
    logging.getLogger("apscheduler.scheduler").warning("Execution of job %r skipped", "pass")
    logging.getLogger("apscheduler.scheduler").info("Added job")
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        logging.getLogger("uvicorn.error").exception("client went away")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("apscheduler.scheduler", "warning"),
        ("uvicorn.error", "error"),
    ]
    assert lines[0]["event"] == "Execution of job 'pass' skipped"
    assert "BrokenPipeError" in lines[1]["exception"]


def test_a_process_without_stderr_logs_to_stdout_or_nowhere_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    """A daemon started without a stderr (a service manager that closed it) keeps running: its lines go to
    stdout, as structlog's own default, or nowhere when there is no stdout either."""
    logs.configure("info", "json")
    log = logs.get_logger("t")
    saved = sys.stdout, sys.stderr  # put back here, not by monkeypatch: capsys's streams are closed by then
    try:
        sys.stderr = None  # type: ignore[assignment]
        log.info("to stdout", target="t1")
        logging.getLogger("uvicorn.error").warning("stdlib to stdout")
        out = capsys.readouterr().out.splitlines()
        assert [json.loads(line)["event"] for line in out] == ["to stdout", "stdlib to stdout"]
        sys.stdout = None  # type: ignore[assignment]
        log.info("to nowhere")
        logging.getLogger("uvicorn.error").warning("stdlib to nowhere")
    finally:
        sys.stdout, sys.stderr = saved


def test_the_process_logger_survives_copy_and_pickle(capsys: pytest.CaptureFixture[str]) -> None:
    """A bound logger copied or pickled (a library that deep-copies its settings) is the same one logger."""
    logs.configure("info", "json")
    logger = logs._stderr_logger()
    assert copy.deepcopy(logger) is logger and copy.copy(logger) is not None
    assert pickle.loads(pickle.dumps(logger)) is logger
    bound = logs.get_logger("t").bind(target="t1")
    copy.deepcopy(bound).info("copied")
    assert json.loads(capsys.readouterr().err)["event"] == "copied"
