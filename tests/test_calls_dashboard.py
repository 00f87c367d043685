"""The dashboard's calls page with phone calls, in a real headless Chromium:
a kind column, and a kind filter (``/calls/registry?kind=``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import httpx
from browser_helpers import Browser, browser, browser_driver, running_process
from selenium.webdriver.remote.webdriver import WebDriver

from neuro_api.calls import CallsCapability
from neuro_api.manager import ServerInfo

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

SID: Final = "CA" + "5" * 32
ROW_IDS: Final = (
    "return Array.from(document.querySelectorAll('#call-rows tr'),"
    " (row) => row.dataset.call);"
)
ROWS: Final = (  # id, data-kind, then the kind and caller cells of each row
    "return Array.from(document.querySelectorAll('#call-rows tr'), (row) =>"
    " [row.dataset.call, row.dataset.kind,"
    " ...Array.from(row.querySelectorAll('td'), (td) => td.textContent).slice(0, 2)]);"
)
PICK_KIND: Final = (
    "const s = document.getElementById('calls-kind');"
    "s.value = arguments[0]; s.dispatchEvent(new Event('change'));"
)


async def test_the_calls_page_shows_and_filters_kinds(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_process(tmp_path) as (process, info):
        assert info.control is not None
        calls = next(c for c in process.capabilities if isinstance(c, CallsCapability))
        assert calls.service is not None
        server = {s.name: s.info for s in process.supervisor.status()}["calls"]
        assert isinstance(server, ServerInfo)
        async with httpx.AsyncClient(base_url=server.local_url) as http:
            made = await http.post(
                "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
            )
        video = made.json()["id"]
        await calls.service.start_phone_call(SID, "+15551234567", "+15550009999")
        await browser.get(f"{info.control.local_url}/ui/calls")
        await browser.wait_for(f'#call-rows tr[data-call="{SID}"]')
        rows = await browser.run(lambda d: d.execute_script(ROWS))
        assert [row[:3] for row in rows] == [
            [SID, "phone", "phone"],
            [video, "video", "video"],
        ]
        assert rows[0][3] == "+15551234567"  # the caller cell
        for kind, shown in (("phone", SID), ("video", video)):

            def pick(driver: WebDriver, kind: str = kind) -> None:
                driver.execute_script(PICK_KIND, kind)

            def only(driver: WebDriver, shown: str = shown) -> bool:
                # The rows' ids in one script: the page replaces its rows
                # every few seconds, and an element found before may be gone.
                return bool(driver.execute_script(ROW_IDS) == [shown])

            await browser.run(pick)
            await browser.wait_until(only, message=f"the {kind} filter did not apply")
        await browser.wait_for_request(r"/calls/registry\?kind=video")
        await browser.assert_clean()
