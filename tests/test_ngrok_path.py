"""Finding the ngrok agent: pyngrok's download script is never taken for it.

Inside a virtualenv, ``ngrok`` on ``PATH`` is pyngrok's console script, which
downloads ngrok when run. The scripts written here look like it (pip's
template) but only leave a marker file if run, so a test can prove that
nothing ran them and nothing was downloaded.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_ngrok import FakeNgrok
from pyngrok import conf, installer, process

from neuro_api.manager import NgrokTunnels, TunnelError
from neuro_api.manager._ngrok_path import find_ngrok, is_pyngrok_script

pytestmark = pytest.mark.timeout(20)

TOKEN = "fake-authtoken-0123456789abcdef"
FIX = (
    "install ngrok from https://ngrok.com/download or set NEURO_API_NGROK_PATH / "
    "--ngrok-path (it is never downloaded automatically)"
)


def pyngrok_script(directory: Path, marker: Path) -> Path:
    """Write a script like pip's ``ngrok`` console script for pyngrok.

    Run, it writes ``marker`` and exits before the import that would
    download ngrok.
    """
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "ngrok"
    script.write_text(
        f"#!{sys.executable}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n"
        f"open({str(marker)!r}, 'w').write('pyngrok script ran')\n"
        "sys.exit(3)\n"
        "from pyngrok.ngrok import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fail on any download, and hide pyngrok's default install location."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", refuse)
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(tmp_path / "none" / "ngrok"))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    directory = tmp_path / "real"
    directory.mkdir()
    fake = FakeNgrok.create(directory)
    yield fake
    leftovers = fake.running_pids()
    fake.kill_leftovers()
    assert leftovers == [], f"fake ngrok agents left running: {leftovers}"


def test_the_installed_console_script_is_recognised(tmp_path: Path) -> None:
    scripts = sysconfig.get_path("scripts")
    installed = shutil.which("ngrok", path=scripts)
    if installed is None:  # pragma: no cover - pyngrok installed elsewhere
        pytest.skip(f"no pyngrok console script in {scripts}")
    assert is_pyngrok_script(installed)  # listed by the pyngrok distribution
    copy = tmp_path / "other-venv" / "ngrok"
    copy.parent.mkdir()
    shutil.copy(installed, copy)
    assert is_pyngrok_script(copy)  # another virtualenv's: by its content


def test_other_executables_are_not_pyngrok_scripts(
    fake: FakeNgrok, tmp_path: Path
) -> None:
    assert not is_pyngrok_script(fake.ngrok_path)  # a shell script
    assert not is_pyngrok_script(sys.executable)  # a native binary
    assert not is_pyngrok_script(tmp_path / "missing")
    # "pyngrok" in a path or a comment is not an import of it.
    mention = tmp_path / "test_pyngrok_here" / "ngrok"
    mention.parent.mkdir()
    mention.write_text(f"#!/bin/sh\n# not pyngrok\nexec {mention.parent}/x\n")
    assert not is_pyngrok_script(mention)


@pytest.mark.usefixtures("no_download")
async def test_a_pyngrok_script_ahead_on_path_is_skipped(
    fake: FakeNgrok, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    script = pyngrok_script(tmp_path / "venv" / "bin", marker)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{fake.directory}")

    tunnels = NgrokTunnels(auth_token=TOKEN)
    assert tunnels.ngrok_path == str(fake.ngrok_path)
    assert tunnels.missing() == []
    url = await tunnels.open("http://127.0.0.1:8001", name="a")
    await tunnels.kill()

    assert url.startswith("https://")
    assert len(fake.starts()) == 1
    assert not marker.exists()


@pytest.mark.usefixtures("no_download")
def test_pyngrok_s_install_location_comes_after_path(
    fake: FakeNgrok, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = pyngrok_script(tmp_path / "venv" / "bin", tmp_path / "ran")
    monkeypatch.setenv("PATH", str(script.parent))
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(fake.ngrok_path))

    assert find_ngrok() == (str(fake.ngrok_path), None)


@pytest.mark.usefixtures("no_download")
async def test_a_pyngrok_script_alone_is_refused_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    script = pyngrok_script(tmp_path / "venv" / "bin", marker)
    monkeypatch.setenv("PATH", str(script.parent))
    default = conf.DEFAULT_NGROK_PATH

    for tunnels, problem in [
        (
            NgrokTunnels(auth_token=TOKEN),
            f"ngrok executable not found on PATH or at {default} (skipped "
            f"pyngrok's download script {script}): {FIX}",
        ),
        (
            NgrokTunnels(ngrok_path=script, auth_token=TOKEN),
            f"{script} is pyngrok's ngrok download script, not ngrok: {FIX}",
        ),
    ]:
        assert tunnels.ngrok_path is None
        assert tunnels.missing() == [problem]
        with pytest.raises(TunnelError) as caught:
            await tunnels.open("http://127.0.0.1:8001", name="a")
        assert str(caught.value) == problem
        await tunnels.kill()
        assert not process.is_process_running(str(script))

    assert not marker.exists()


@pytest.mark.usefixtures("no_download")
async def test_both_missing_pieces_are_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    tunnels = NgrokTunnels()

    missing = tunnels.missing()

    assert len(missing) == 2
    assert missing[0].startswith("ngrok executable not found on PATH")
    assert missing[1].startswith("no ngrok auth token: set NGROK_AUTHTOKEN")
    with pytest.raises(TunnelError) as caught:
        await tunnels.open("http://127.0.0.1:8001", name="a")
    assert str(caught.value) == "; ".join(missing)
    assert "\n" not in str(caught.value)
