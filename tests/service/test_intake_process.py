"""Webhook jobs in a child process (``slabot.service.intake_process``): the work happens in
another process, its errors come back by name, a child that dies fails only its job and is
replaced, SIGTERM does not stop a child (its parent does, by closing the pipe), and an
intake's retries and forgetting work across the process boundary."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.intake import IntakeJob, WebhookIntake
from slabot.demo.environment import DemoSystems
from slabot.service.intake_process import IntakeProcess, IntakeProcessError, RemoteJobError
from slabot.service.runtime import build_runtime
from slabot.service.settings import load_settings


def ticket_processor(log: str) -> Callable[[IntakeJob], None]:
    """Built in the child: appends ``pid subject`` to ``log`` for each job; subjects ask for
    failures (``fail``, ``flaky`` the first two times) or a death (``die``)."""

    def process(job: IntakeJob) -> None:
        subject = str(job.subject)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {subject}\n")
        if subject == "die":
            os._exit(3)
        if subject == "slow":
            time.sleep(60)
        if subject == "fail":
            raise ValueError(f"Zendesk ticket {subject} not found")
        if subject == "flaky":
            with open(log, encoding="utf-8") as handle:
                tries = sum(1 for line in handle if line.split()[1] == "flaky")
            if tries <= 2:
                raise ConnectionError("Zendesk answered 503")

    return process


def broken_set_up() -> Callable[[IntakeJob], None]:
    """Built in the child: fails as a config file edited into an invalid one would."""
    raise ValueError("slabot.yaml: zendesk.policy: field required")


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


def test_ctrl_c_does_not_stop_the_child_closing_its_pipe_does(
    runner: IntakeProcess, log: Path
) -> None:
    runner.start()
    runner(job("101"))  # the child is serving (its signal handlers are set)
    child = runner.pid
    assert child is not None
    os.kill(child, signal.SIGINT)
    runner(job("102"))
    assert runner.pid == child
    runner.close(10)
    assert runner.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    with pytest.raises(IntakeProcessError, match="closed"):
        runner(job("103"))
    assert runner.started == 1  # a closed runner starts no child


def test_close_waits_for_the_running_job_only_until_its_timeout(
    runner: IntakeProcess, log: Path
) -> None:
    runner(job("101"))
    child = runner.pid
    assert child is not None
    failures: list[BaseException] = []

    def send_slow_job() -> None:
        try:
            runner(job("slow"))
        except BaseException as error:
            failures.append(error)

    sender = threading.Thread(target=send_slow_job)
    sender.start()
    while [subject for _, subject in lines(log)][-1:] != ["slow"]:
        time.sleep(0.01)
    began = time.monotonic()
    runner.close(0.5)
    sender.join(10)
    assert time.monotonic() - began < 10  # the job sleeps 60 s
    assert not sender.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], IntakeProcessError)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_child_that_cannot_start_says_why_and_is_not_restarted_at_once() -> None:
    runner = IntakeProcess("zendesk", broken_set_up, restart_pause=60)
    try:
        with pytest.raises(
            IntakeProcessError,
            match=r"could not start: ValueError: slabot.yaml: zendesk.policy: field required",
        ):
            runner(job("101"))
        with pytest.raises(IntakeProcessError, match="could not start"):
            runner(job("102"))
        assert runner.started == 1
        assert runner.pid is None
    finally:
        runner.close(5)


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


def test_slabot_run_does_the_jobs_in_a_child_except_on_an_in_memory_database(
    systems: DemoSystems, config_file: Path, tmp_path: Path
) -> None:
    environ = systems.environ(f"sqlite:///{tmp_path / 'slabot.db'}", config_file)
    on_file = build_runtime(load_settings(environ), webhook_processes=environ)
    in_memory = build_runtime(
        load_settings(systems.environ("sqlite://", config_file)), webhook_processes=environ
    )
    try:
        runner = on_file.helpdesks["zendesk"].webhook.intake.runner
        assert isinstance(runner, IntakeProcess)
        assert runner.niceness == 0  # SQLite: the child may hold the one write lock
        assert in_memory.helpdesks["zendesk"].webhook.intake.runner is None
    finally:
        on_file.close()
        in_memory.close()
