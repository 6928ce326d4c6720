"""Running ``slabot run`` as a real process: free ports, readiness, stopping."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

SLABOT = Path(sys.executable).parent / "slabot"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment less any slabot setting, plus ``extra``."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZENDESK_", "JIRA_", "SLACK_", "SLABOT_", "DATABASE_URL"))
    }
    return {**kept, **extra}


def start(
    environ: dict[str, str],
    port: int,
    log: Path,
    cwd: Path,
    *args: str,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """``slabot run --port PORT ARGS...`` with ``environ`` (see ``clean_environ``), its output
    in ``log``; ``preexec_fn`` runs in the child before it starts (to set a resource limit)."""
    handle = log.open("wb")
    return subprocess.Popen(
        [str(SLABOT), "run", "--port", str(port), *args],
        env=clean_environ(environ),
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )


def get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"null")


def post(url: str, headers: dict[str, str], body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"slabot run exited {process.returncode}:\n{log.read_text()}")
        try:
            if get(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"slabot run not ready in {timeout}s:\n{log.read_text()}")


def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Wait until ``condition()`` holds; returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)
