"""Webhook jobs in a child process (``slabot.service.intake_process``): the work happens in
another process, its errors come back by name, a child that dies fails only its job and is
replaced, SIGTERM does not stop a child (its parent does, by closing the pipe), and an
intake's retries and forgetting work across the process boundary."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.common import IntakeJob, WebhookIntake
from slabot.service.intake_process import IntakeProcess, IntakeProcessError, RemoteJobError


def ticket_processor(log: str) -> Callable[[IntakeJob], None]:
    """Built in the child: appends ``pid subject`` to ``log`` for each job; subjects ask for
    failures (``fail``, ``flaky`` the first two times) or a death (``die``)."""

    def process(job: IntakeJob) -> None:
        subject = str(job.subject)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {subject}\n")
        if subject == "die":
            os._exit(3)
        if subject == "fail":
            raise ValueError(f"Zendesk ticket {subject} not found")
        if subject == "flaky":
            with open(log, encoding="utf-8") as handle:
                tries = sum(1 for line in handle if line.split()[1] == "flaky")
            if tries <= 2:
                raise ConnectionError("Zendesk answered 503")

    return process


def job(subject: str) -> IntakeJob:
    return IntakeJob("zendesk", f"invocation:{subject}", subject, {"ticket_id": subject})


def lines(log: Path) -> list[tuple[int, str]]:
    return [
        (int(pid), subject)
        for pid, subject in (ln.split() for ln in log.read_text().split("\n") if ln)
    ]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.log"
    path.touch()
    return path


@pytest.fixture
def runner(log: Path) -> Iterator[IntakeProcess]:
    process = IntakeProcess("zendesk", functools.partial(ticket_processor, str(log)))
    yield process
    process.close(10)


def test_jobs_run_in_a_child_process_and_their_errors_come_back_by_name(
    runner: IntakeProcess, log: Path
) -> None:
    runner(job("101"))
    with pytest.raises(RemoteJobError, match=r"^ValueError: Zendesk ticket fail not found$"):
        runner(job("fail"))
    runner(job("102"))
    done = lines(log)
    assert [subject for _, subject in done] == ["101", "fail", "102"]
    assert {pid for pid, _ in done} == {runner.pid}
    assert runner.pid != os.getpid()
    assert runner.started == 1


def test_a_child_that_dies_fails_its_job_only_and_a_new_child_takes_the_next(
    runner: IntakeProcess, log: Path
) -> None:
    runner(job("101"))
    first = runner.pid
    with pytest.raises(IntakeProcessError, match=r"exited \(status 3\) while processing 'die'"):
        runner(job("die"))
    runner(job("102"))
    assert runner.started == 2
    assert runner.pid not in (None, first)
    assert lines(log)[-1] == (runner.pid, "102")


def test_sigterm_does_not_stop_the_child_closing_its_pipe_does(
    runner: IntakeProcess, log: Path
) -> None:
    runner.start()
    child = runner.pid
    assert child is not None
    runner(job("101"))  # the child is serving (its signal handlers are set)
    os.kill(child, signal.SIGTERM)
    runner(job("102"))
    assert runner.pid == child
    runner.close(10)
    assert runner.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_an_intake_retries_a_job_in_the_child_and_forgets_a_delivery_that_keeps_failing(
    runner: IntakeProcess, log: Path
) -> None:
    forgotten: list[tuple[str, str]] = []
    intake = WebhookIntake(
        "zendesk",
        lambda _job: pytest.fail("the job ran in the parent"),
        lambda _source, _key: True,
        lambda source, key: forgotten.append((source, key)),
        retry_delay=0.01,
    )
    intake.run_jobs_in(runner)
    intake.start()
    try:
        assert intake.submit(job("flaky")) == "accepted"
        assert intake.drain(30)
        assert intake.submit(job("fail")) == "accepted"
        assert intake.drain(30)
    finally:
        intake.stop(10)
    assert [subject for _, subject in lines(log)] == ["flaky"] * 3 + ["fail"] * 3
    assert (intake.processed, intake.failed) == (1, 1)
    assert forgotten == [("zendesk", "invocation:fail")]
    assert runner.pid is None  # stopping the intake closed the child
