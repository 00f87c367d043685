"""examples/realtime_pool.py, run as a script against the fake Realtime API."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
from fake_realtime import Text, open_fake_realtime

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "realtime_pool.py"


async def test_the_example_asks_and_prints_the_answer() -> None:
    async with open_fake_realtime(key="sk-example-key") as fake:
        fake.script(Text("Hi chat, it's me, Neuro!"))
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-example-key",
            "OPENAI_REALTIME_URL": fake.url,
        }
        with trio.fail_after(30):
            result = await trio.run_process(
                [sys.executable, str(EXAMPLE), "Say", "hi"],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
            )
        (request,) = fake.connections[0].responses
    assert result.stdout.decode() == "Hi chat, it's me, Neuro!\n"
    assert request["conversation"] == "none"
    assert request["input"][0]["content"][0]["text"] == "Say hi"
    assert fake.connections[0].items == {}


async def test_the_example_says_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = await trio.run_process(
        [sys.executable, str(EXAMPLE)], env=env, capture_stderr=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "set OPENAI_API_KEY"
