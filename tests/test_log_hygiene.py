"""What games send never forges, floods or garbles the log and the console.

Before issue 10 a game title with a newline and ANSI escapes wrote a whole
forged log line, and every bad frame wrote one error line (20,000 lines a
second from two clients). Text a game chose is now escaped wherever it is
printed, and shown diagnostics are rate limited per game and id, with a
summary of what was held back.
"""

from __future__ import annotations

import io
import json
import logging
import math
from typing import Any, cast

import pytest
import trio
import trio.testing
from server_helpers import PLAY, RecordingServer, connect, start_server

from neuro_api._redact import RedactingFormatter
from neuro_api._text import printable
from neuro_api.command import Action
from neuro_api.diagnostics import Diagnostic, diagnose
from neuro_api.server import (
    ConsoleInteractiveNeuroServer,
    ServerConfig,
    TrioNeuroServerClient,
)
from neuro_api.server._ratelimit import (
    ALL_GAMES,
    Key,
    LogLimiter,
    Summary,
    show_when_due,
    summary_text,
)

EVIL_TITLE = "Evil\n2026-12-05 10:00:00 CRITICAL neuro_api: forged \x1b[31mred\x1b[0m"


# --- escaping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("line\nbreak", "line\\nbreak"),
        ("\x1b[2J", "\\x1b[2J"),
        ("tab\there\r", "tab\\there\\r"),
        ("c1 \x9b csi", "c1 \\x9b csi"),
        ("bidi \u202e desrever", "bidi \\u202e desrever"),
        ("sep\u2028arator", "sep\\u2028arator"),
        ("lone \ud800", "lone \\ud800"),
        ("del\x7f", "del\\x7f"),
    ],
)
def test_printable_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
    printable(text).encode("utf-8")  # always printable as UTF-8


def test_printable_keeps_ordinary_text() -> None:
    text = "Café 日本語 🎮 back\\slash \"quotes\" 'single'"
    assert printable(text) == text


def test_diagnostics_escape_what_a_game_chose() -> None:
    diagnostic = diagnose(
        "protocol.game-renamed", game=EVIL_TITLE, old=EVIL_TITLE, new="x\ny"
    )
    for text in (str(diagnostic), diagnostic.format(frame=True)):
        assert "\x1b" not in text
    assert "\n" not in str(diagnostic)
    assert diagnostic.game is not None
    assert "\n" not in diagnostic.game


def test_the_cli_formatter_escapes_arguments_not_templates() -> None:
    formatter = RedactingFormatter("%(message)s", ["s3cr3t-token"])
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "%s joined\nsecond line %d",
        (EVIL_TITLE, 3),
        None,
    )
    text = formatter.format(record)
    assert text.count("\n") == 1  # the template's own newline
    assert "\x1b" not in text
    assert "Evil\\n2026" in text
    assert record.args == (EVIL_TITLE, 3)  # the record itself is untouched
    secret = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s", ("s3cr3t-token",), None
    )
    assert formatter.format(secret) == "***"


def _one_line_each(records: list[logging.LogRecord]) -> None:
    for record in records:
        message = record.getMessage()
        assert "\n" not in message, message
        assert "\x1b" not in message, message


async def test_a_forged_title_stays_one_log_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    with caplog.at_level(logging.DEBUG):
        async with connect(info.url, EVIL_TITLE) as game:
            await game.startup()
            await game.send_obj({"command": "nope\n\x1b[1m", "game": EVIL_TITLE})
            await game.register(Action("Bad\nName", ""))
            await server.wait_diag("protocol.unknown-command")
        await server.wait_until(lambda: server.disconnected)
    assert caplog.records
    _one_line_each(caplog.records)
    assert any("Evil\\n2026" in r.getMessage() for r in caplog.records)


async def test_the_console_prints_game_text_on_one_line(nursery: trio.Nursery) -> None:
    output = io.StringIO()
    server = ConsoleInteractiveNeuroServer(output=output, input=_NoInput())
    info = await start_server(nursery, server)
    forged = "hi\n[Other] FORCE (priority critical)\x1b[2J"
    async with connect(info.url, EVIL_TITLE) as game:
        await game.startup()
        await game.context(forged)
        await game.register(Action("play", "Play\nnow", PLAY.schema))
        with trio.fail_after(5):
            while "[CONTEXT]" not in output.getvalue():  # noqa: ASYNC110
                await trio.sleep(0.01)
    text = output.getvalue()
    assert "\x1b" not in text
    assert "[Other] FORCE" not in text.splitlines()[-1]
    assert "hi\\n[Other] FORCE (priority critical)\\x1b[2J" in text


class _NoInput(trio.abc.ReceiveStream):
    """An input that never sends a line (and never ends)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


# --- rate limiting ----------------------------------------------------------------


def test_limiter_shows_a_burst_then_counts() -> None:
    limiter = LogLimiter(burst=3, window=10.0)
    key = ("Game", "protocol.invalid-json")
    shown = [limiter.allow(key, 0.1 * n)[0] for n in range(10)]
    assert shown == [True] * 3 + [False] * 7
    assert limiter.holding(key)
    assert limiter.next_due() == pytest.approx(10.0)
    # The next line after the window: a summary, then the line.
    allowed, due = limiter.allow(key, 10.5)
    assert allowed
    assert due == [Summary(key, 7, 10.0)]
    assert summary_text(due[0]) == (
        "... 7 more protocol.invalid-json from Game in the last 10 s"
    )


def test_limiter_keys_are_independent() -> None:
    limiter = LogLimiter(burst=1, window=10.0)
    assert limiter.allow(("A", "x"), 0)[0]
    assert not limiter.allow(("A", "x"), 1)[0]
    assert limiter.allow(("B", "x"), 1)[0]
    assert limiter.allow(("A", "y"), 1)[0]


def test_limiter_flush() -> None:
    limiter = LogLimiter(burst=1, window=10.0)
    for key in (("A", "x"), ("B", "x")):
        for now in (0, 1, 2):
            limiter.allow(key, now)
    assert limiter.flush(5.0) == []
    assert limiter.flush(5.0, final=lambda key: key[0] == "A") == [
        Summary(("A", "x"), 2, 10.0)
    ]
    assert limiter.flush(10.0) == [Summary(("B", "x"), 2, 10.0)]
    assert limiter.next_due() is None
    assert summary_text(Summary((None, "connections"), 4213, 10.0)) == (
        "... 4,213 more connections in the last 10 s"
    )


def test_limiter_forgets_the_oldest_key_with_its_summary() -> None:
    limiter = LogLimiter(burst=1, window=1000.0)
    limiter.allow(("first", "x"), 0)
    limiter.allow(("first", "x"), 0)
    due: list[Summary] = []
    for index in range(5000):
        due += limiter.allow((f"game{index}", "x"), 1)[1]
    assert due == [Summary(("first", "x"), 1, 1000.0)]
    assert len(limiter._windows) == 4096


def test_limiter_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="burst"):
        LogLimiter(burst=0)


async def test_a_flood_of_bad_frames_logs_a_burst_and_a_summary(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RecordingServer(ServerConfig(log_burst=5, log_window=10.0))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.INFO, logger="neuro_api.server"):
        async with (
            connect(info.url, "Flood") as flood,
            connect(info.url, "Calm") as calm,
        ):
            await flood.startup()
            await calm.startup()
            for _ in range(200):
                await flood.send("{not json")
            await server.wait_diag("protocol.invalid-json", count=200)
            await calm.send("{not json")
            await server.wait_diag("protocol.invalid-json", game="Calm")
            shown = [
                r for r in caplog.records if "protocol.invalid-json" in r.getMessage()
            ]
            # Five of the flood, and the calm game's own line.
            assert len([r for r in shown if "[Flood]" in r.getMessage()]) == 5
            assert len([r for r in shown if "[Calm]" in r.getMessage()]) == 1
            # Every diagnostic is still kept and counted.
            assert server.stats.diagnostics["protocol.invalid-json"] == 201
            # The game goes quiet: the summary comes once the window is over.
            await trio.sleep(11)
            summaries = [r for r in caplog.records if r.getMessage().startswith("...")]
            assert [r.getMessage() for r in summaries] == [
                "... 195 more protocol.invalid-json from Flood in the last 10 s"
            ]
            assert summaries[0].levelno == logging.WARNING


async def test_a_game_leaving_says_what_was_held_back(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = RecordingServer(ServerConfig(log_burst=2, log_window=1000.0))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.WARNING, logger="neuro_api.server"):
        async with connect(info.url, "Brief") as game:
            await game.startup()
            for _ in range(10):
                await game.send("[]")
            await server.wait_diag("protocol.not-an-object", count=10)
        await server.wait_until(lambda: server.disconnected)
    messages = [r.getMessage() for r in caplog.records]
    assert "... 8 more protocol.not-an-object from Brief in the last 1000 s" in messages


async def test_connection_churn_is_summed_up(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    # Real time: connecting takes virtual time on the autojump clock.
    server = RecordingServer(ServerConfig(log_burst=3, log_window=0.5))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.INFO, logger="neuro_api.server"):
        for _ in range(20):
            async with connect(info.url, "Churn"):
                pass
        await server.wait_until(lambda: len(server.disconnected) == 20)
        await trio.sleep(0.6)
        async with connect(info.url, "Late"):
            pass
    messages = [r.getMessage() for r in caplog.records]
    shown = [m for m in messages if m.startswith("game connected")]
    held = [
        int(m.split()[1].replace(",", ""))
        for m in messages
        if m.startswith("... ") and m.endswith("more connections in the last 0.5 s")
    ]
    assert held  # some were held back, and said so
    assert len(shown) + sum(held) == 21
    assert len(shown) < 21


async def test_the_console_prints_what_the_log_shows(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    output = io.StringIO()
    config = ServerConfig(log_burst=2, log_window=10.0)
    server = ConsoleInteractiveNeuroServer(config, output=output, input=_NoInput())
    info = await start_server(nursery, server)
    async with connect(info.url, "Noisy") as game:
        await game.startup()
        for _ in range(30):
            await game.send_obj({"command": "bogus", "game": "Noisy"})
        with trio.fail_after(5):
            while server.stats.diagnostics["protocol.unknown-command"] < 30:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await trio.sleep(11)
    text = output.getvalue()
    assert text.count("protocol.unknown-command: command: unknown command 'bogus'") == 2
    assert "... 28 more protocol.unknown-command from Noisy in the last 10 s" in text


async def test_a_new_game_name_in_each_frame_is_still_one_game(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    # The rate limit is per game: a connection must not become a new game
    # (a new key) by writing another name into each frame's "game" field.
    server = RecordingServer(ServerConfig(log_burst=3, log_window=1000.0))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.INFO, logger="neuro_api.server"):
        async with connect(info.url, "Flood") as flood:
            await flood.startup()
            for n in range(100):
                frame = {
                    "command": "context",
                    "game": f"G{n}",
                    "junk": 1,
                    "data": {"message": "x", "silent": True},
                }
                await flood.send(json.dumps(frame))
            await server.wait_diag("protocol.unknown-key", count=100)
    for id_ in ("protocol.unknown-key", "protocol.game-renamed"):
        shown = [
            r.getMessage()
            for r in caplog.records
            if id_ in r.getMessage() and not r.getMessage().startswith("...")
        ]
        assert len(shown) == 3
        assert all("[Flood]" in line for line in shown)
        assert {d.game for d in server.diags(id_)} == {"Flood"}
    messages = [r.getMessage() for r in caplog.records]
    assert "... 97 more protocol.game-renamed from Flood in the last 1000 s" in (
        messages
    )


async def test_all_games_together_have_a_log_limit_too(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each game within its own burst, but many games: the log still gets at
    # most 20 bursts' worth per window, then one summary.
    server = RecordingServer(ServerConfig(log_burst=2, log_window=10.0))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.INFO, logger="neuro_api.server"):
        for n in range(30):
            async with connect(info.url, f"Game{n}") as game:
                await game.startup()
                await game.send("[]")
                await game.send("[]")
                await server.wait_diag("protocol.not-an-object", count=2 * (n + 1))
        await trio.sleep(11)
    shown = [
        r.getMessage()
        for r in caplog.records
        if "protocol.not-an-object" in r.getMessage()
        and not r.getMessage().startswith("...")
    ]
    assert len(shown) == 2 * 20
    summaries = [
        r.getMessage() for r in caplog.records if "of all games" in r.getMessage()
    ]
    assert summaries == ["... 20 more diagnostics of all games in the last 10 s"]
    assert server.stats.diagnostics["protocol.not-an-object"] == 60


async def test_connected_games_keep_their_diagnostics_in_a_flood_of_names(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Keep") as keep:
        await keep.startup()
        await keep.send("[]")
        await server.wait_diag("protocol.not-an-object", game="Keep")
        for n in range(1000):
            server.record_diagnostic(
                diagnose("protocol.not-an-object", game=f"Gone{n}", detail="x")
            )
        assert "Keep" in server.diagnostics
        assert len(server.diagnostics) <= 257
        assert "Gone0" not in server.diagnostics
        assert "Gone999" in server.diagnostics


# --- summaries count against all games' lines --------------------------------------


def test_summaries_of_many_titles_are_charged_to_all_games() -> None:
    # Every game a new title, one line held back each: their summaries are
    # lines too. Beyond all games' lines of the window they are only added
    # to all games' count; 10,000 titles also make the limiter forget keys,
    # and it must never forget all games' own window (a fresh window would
    # be another 20 bursts).
    limiter = LogLimiter(burst=1, window=1000.0)
    lines = 0
    summaries: list[Summary] = []
    for index in range(10_000):
        for _ in range(2):
            shown, due = limiter.allow_diagnostic((f"T{index}", "x"), 1.0)
            lines += shown
            summaries += due
    summaries += limiter.flush(2.0, final=lambda key: key[0] is not None)
    lines += len(summaries)
    assert lines <= limiter.all_games_burst
    assert limiter.holding(ALL_GAMES)
    last = limiter.flush(1001.0)
    assert [summary.key for summary in last] == [ALL_GAMES]
    # Nothing is lost: each of the 20,000 lines was shown or counted once.
    shown_lines = lines - len(summaries)
    assert shown_lines + sum(s.count for s in summaries + last) == 20_000


def test_summaries_of_events_are_not_charged_to_all_games() -> None:
    limiter = LogLimiter(burst=1, window=10.0)
    for index in range(limiter.all_games_burst + 1):
        for _ in range(2):
            limiter.allow_diagnostic((f"T{index}", "x"), 0.0)
    assert limiter.holding(ALL_GAMES)
    for _ in range(3):
        limiter.allow((None, "connections"), 0.0)
    # The games leave: all games have no line left for their summaries, but
    # connections are limited on their own.
    due = limiter.flush(5.0, final=lambda key: key != ALL_GAMES)
    assert due == [Summary((None, "connections"), 2, 10.0)]
    assert limiter.flush(10.0) == [Summary(ALL_GAMES, 1 + 21, 10.0)]


class _ShownServer(RecordingServer):
    """Records what it shows: diagnostics and summaries."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.shown: list[str] = []
        self.summaries: list[Summary] = []

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        self.shown.append(str(diagnostic))
        super().show_diagnostic(diagnostic)

    def show_summary(self, summary: Summary) -> None:
        self.summaries.append(summary)
        super().show_summary(summary)


_EVENTS = ("connections", "disconnections")


async def test_games_leaving_under_new_titles_cannot_flood_the_log(
    nursery: trio.Nursery,
) -> None:
    # Reviewer's flood: each connection a new title, three bad frames three
    # times each, then it leaves (which shows its summaries at once). Before,
    # every departure wrote three summary lines past all games' limit.
    burst, games = 2, 40
    server = _ShownServer(ServerConfig(log_burst=burst, log_window=1000.0))
    info = await start_server(nursery, server)
    for n in range(games):
        title = f"T{n}"
        async with connect(info.url, title) as game:
            await game.startup()
            for frame in ("[]", json.dumps({"command": "bogus", "game": title})):
                for _ in range(3):
                    await game.send(frame)
            await server.wait_diag("protocol.unknown-command", count=3 * (n + 1))
    await server.wait_until(lambda: len(server.disconnected) == games)
    diagnostic_summaries = [s for s in server.summaries if s.key[1] not in _EVENTS]
    lines = len(server.shown) + len(diagnostic_summaries)
    assert lines <= burst * 20
    # All games' own summary says the rest once its window is over.
    rest = server.log_limiter.flush(math.inf)
    assert [s.key for s in rest if s.key[1] not in _EVENTS] == [ALL_GAMES]
    held = sum(s.count for s in diagnostic_summaries + rest if s.key[1] not in _EVENTS)
    assert len(server.shown) + held == sum(server.stats.diagnostics.values())


# --- the task that shows summaries once due ----------------------------------------


class _CountingLimiter(LogLimiter):
    """Counts the flushes (each scans every key)."""

    flushes = 0

    def flush(self, now: float, **options: Any) -> list[Summary]:
        self.flushes += 1
        return super().flush(now, **options)


async def test_the_flusher_wakes_about_once_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 4096 keys whose windows end one after another over 10 s: one wake-up
    # (and one scan of all keys) per key took 2.7 s of CPU per window.
    keys, window = 4096, 10.0
    limiter = _CountingLimiter(burst=5, window=window)
    start = trio.current_time()
    ends: dict[Key, float] = {}
    for index in range(keys):
        key = (f"G{index}", "x")
        ends[key] = start + index * window / keys + window
        for _ in range(6):
            limiter.allow(key, ends[key] - window)
    shown: list[tuple[float, Summary]] = []
    limiter.flushing = True
    await show_when_due(limiter, lambda s: shown.append((trio.current_time(), s)))
    assert not limiter.flushing
    # Ten seconds of ending windows, then all games' summary.
    assert limiter.flushes <= 13
    assert sum(summary.count for _, summary in shown) == keys
    for when, summary in shown:
        if summary.key != ALL_GAMES:
            assert ends[summary.key] <= when <= ends[summary.key] + 1.0


async def test_the_flusher_survives_a_failing_show(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = LogLimiter(burst=1, window=10.0)
    for key in (("A", "x"), ("B", "x"), ("C", "x")):
        limiter.allow(key, trio.current_time())
        limiter.allow(key, trio.current_time())
    tried: list[Summary] = []

    def show(summary: Summary) -> None:
        tried.append(summary)
        raise RuntimeError("a subclass's show_summary is broken")

    limiter.flushing = True
    with caplog.at_level(logging.ERROR, logger="neuro_api.server"):
        await show_when_due(limiter, show)
    assert len(tried) == 3  # each one tried
    assert not limiter.flushing
    # Logged once, with the traceback.
    assert [r.getMessage() for r in caplog.records] == ["showing a log summary failed"]
    assert caplog.records[0].exc_info is not None


class _BrokenSummaries(RecordingServer):
    def show_summary(self, summary: Summary) -> None:
        raise RuntimeError("a subclass's show_summary is broken")


async def test_a_failing_show_summary_does_not_stop_the_server(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The summaries are shown in the server's upkeep: an exception there
    # would end the server with every game.
    server = _BrokenSummaries(ServerConfig(log_burst=1, log_window=10.0))
    info = await start_server(nursery, server)
    with caplog.at_level(logging.ERROR, logger="neuro_api.server"):
        async with connect(info.url, "Noisy") as game:
            await game.startup()
            for _ in range(5):
                await game.send("[]")
            await server.wait_diag("protocol.not-an-object", count=5)
            await trio.sleep(11)  # the summary is due, and fails
            await game.send("[]")
            await server.wait_diag("protocol.not-an-object", count=6)
        async with connect(info.url, "Later") as later:
            await later.startup()
    assert "showing a log summary failed" in [r.getMessage() for r in caplog.records]


class _ClosedNursery:
    def start_soon(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Nursery is closed to new arrivals")


def test_flushing_is_not_set_if_the_flusher_cannot_start() -> None:
    # Else nothing would ever clear it, and no summary be shown again.
    server = RecordingServer()
    server._upkeep = cast(trio.Nursery, _ClosedNursery())
    with pytest.raises(RuntimeError, match="closed"):
        server.show_summaries_later()
    assert not server.log_limiter.flushing
    client = TrioNeuroServerClient(cast(Any, None), server)
    client._nursery = cast(trio.Nursery, _ClosedNursery())
    limiter = LogLimiter()
    with pytest.raises(RuntimeError, match="closed"):
        client.show_summaries_later(limiter)
    assert not limiter.flushing
