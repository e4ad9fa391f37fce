"""The web view in a real browser (Debian's Chromium, driven by Playwright): three beds on a real
broker, one normal, one with a HIGH alarm, one gone offline. Screenshots land in the test's tmp
dir and in tests/central/output/ for a person to look at."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Page, async_playwright

from monitord.readings import Quality, Vital, VitalsReading
from tests.central.conftest import OUTPUT, WebView
from tests.central.feeds import Publisher, SimBed, alarm
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import Bed, bed_config
from tests.mqtt.support import until

CHROMIUM = "/usr/bin/chromium"
RED = "rgb(213, 0, 0)"  # --high in central.css


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: scripts/bootstrap.sh installs Debian's chromium"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM)
        yield b
        await b.close()


async def new_page(browser: Browser, width: int, height: int) -> Page:
    # CSP off in the test browser: Playwright's waits evaluate strings (which the CSP forbids), and
    # the escaping test must show the page itself never turns feed text into markup.
    ctx = await browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    return await ctx.new_page()


async def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / name)
    return path


def vitals(hr: float, spo2: float) -> VitalsReading:
    return VitalsReading("monitor", {Vital.HR: hr, Vital.SPO2: spo2, Vital.RR: 14.0, Vital.SBP: 124.0,
                                     Vital.DBP: 78.0}, Quality.VALID)


async def tile_order(page: Page) -> list[str]:
    return list(await page.eval_on_selector_all("#tiles .tile", "ns => ns.map(n => n.dataset.bed)"))


async def test_overview_puts_the_high_bed_first_in_red_and_greys_the_offline_one(
        broker: Mosquitto, web: WebView, browser: Browser, tmp_path: Path) -> None:
    # Names sort the other way round from priority, so order by name alone would fail.
    normal, gone, high = [await Bed(bed_config(broker.port, b)).start() for b in ("bed-a", "bed-b", "bed-c")]
    try:
        normal.loop.put(vitals(72.0, 98.0))
        gone.loop.put(vitals(66.0, 97.0))
        high.loop.put(vitals(91.0, 95.0))
        high.fault()
        await until(lambda: "tech.pump.device_fault" in high.active(), what="HIGH alarm raised at the bedside")
        await gone.stop()

        await asyncio.to_thread(web.poll, "/api/beds", lambda snap: snap.get("order") == ["bed-c", "bed-b", "bed-a"]
                                and snap["tiles"][1]["cond"] == "offline")

        page = await new_page(browser, 1000, 420)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(web.url + "/")
        await page.wait_for_function("document.querySelectorAll('#tiles .tile').length === 3")
        for bed_id, hr in (("bed-a", "72"), ("bed-c", "91")):  # the beds' states with vitals (at most 1/s)
            await page.wait_for_selector(f".tile[data-bed='{bed_id}'] .val.hr .v:text('{hr}')")
        assert await tile_order(page) == ["bed-c", "bed-b", "bed-a"]

        first = page.locator("#tiles .tile").first
        assert await first.evaluate("n => getComputedStyle(n).backgroundColor") == RED
        flash = await first.locator(".alarm").evaluate(
            "n => [getComputedStyle(n).animationName, getComputedStyle(n).animationDuration]")
        assert flash == ["flash-high", "0.5s"]  # IEC high: ~2 Hz
        assert "!!! HIGH" in await first.locator(".alarm").inner_text()
        assert "device fault" in await first.locator(".alarm").inner_text()

        off = page.locator(".tile[data-bed='bed-b']")
        assert await off.locator(".status").inner_text() == "OFFLINE"
        assert "stale" in (await off.get_attribute("class") or "")
        assert await off.evaluate("n => getComputedStyle(n).filter") == "grayscale(1)"
        assert await off.evaluate("n => getComputedStyle(n).backgroundColor") != RED
        for key in ("dose", "hr", "spo2", "nibp"):
            assert await off.locator(f".val.{key} .v").inner_text() == "--"  # its last numbers are not shown
        assert "66" not in await off.inner_text()

        ok = page.locator(".tile[data-bed='bed-a']")
        assert await ok.locator(".status").inner_text() == "online"
        assert await ok.locator(".val.nibp .v").inner_text() == "124/78"
        age = await ok.locator(".val.hr .a").inner_text()  # each value with its data age, aged by the page
        assert re.fullmatch(r"\d+ s", age) and int(age.split()[0]) <= 12, age  # state comes at least every 10 s
        assert await page.locator("#count").inner_text() == "3 beds"
        picture = await shot(page, tmp_path, "central-overview.png")
        assert picture.stat().st_size > 10_000

        # The browser blocks sound until a click: the page says so, and a click turns it on.
        assert await page.evaluate("window.central.alerts") == 1
        assert await page.evaluate("window.central.audio.state") == "suspended"
        assert await page.locator("#sound").is_visible()
        await page.locator("#sound").click()
        await page.wait_for_function("window.central.audio.state === 'running'")
        await page.wait_for_function("window.central.beeps === 1")
        assert not await page.locator("#sound").is_visible()

        # A new HIGH on another bed sounds again and moves that bed up (HIGH, then by name).
        normal.fault()
        await page.wait_for_function("window.central.alerts === 2 && window.central.beeps === 2")
        await page.wait_for_function(
            "[...document.querySelectorAll('#tiles .tile')].map(n => n.dataset.bed).join() === 'bed-a,bed-c,bed-b'")

        # The bed page: its alarm history and trends.
        await page.locator(".tile[data-bed='bed-c']").click()
        await page.wait_for_url(web.url + "/bed/bed-c")
        await page.wait_for_selector("#history tbody tr")
        rows = await page.eval_on_selector_all("#history tbody tr", "rs => rs.map(r => r.innerText)")
        assert any("!!! HIGH" in r and "raised" in r and "device fault" in r for r in rows), rows
        assert await page.locator("#bed").inner_text() == "bed-c"
        assert await page.locator("#alarm").evaluate("n => getComputedStyle(n).backgroundColor") == RED
        assert await page.locator("#charts canvas").count() == 6
        await page.set_viewport_size({"width": 1000, "height": 900})
        await shot(page, tmp_path, "central-bed.png")
        assert errors == []
    finally:
        for b in (normal, gone, high):
            await b.stop()


async def test_feed_strings_are_shown_as_text_never_as_html(
        broker: Mosquitto, web: WebView, browser: Browser, tmp_path: Path) -> None:
    hostile_bed = '<img src=x onerror="window.pwned=1">'
    hostile_msg = '<script>window.pwned=2</script><b>bold</b>'
    bed = SimBed(hostile_bed, check=False)  # a publisher that ignores the schema
    pub = Publisher(broker.port)
    try:
        pub.bed(bed)
        a = alarm("high", "x<i>y</i>", hostile_msg)
        pub.send(bed.topic("alarms"), bed.alarms(a), retain=True)
        pub.send(*bed.alarm_event(a))
        page = await new_page(browser, 700, 400)
        await page.goto(web.url + "/")
        await page.wait_for_selector("#tiles .tile")
        tile = page.locator("#tiles .tile").first
        assert await tile.locator(".bed").inner_text() == hostile_bed
        assert hostile_msg in await tile.locator(".alarm").inner_text()
        assert await page.locator("#tiles img, #tiles b, #tiles script, #tiles i").count() == 0
        await page.goto(web.url + "/bed/" + quote(hostile_bed, safe=""))
        await page.wait_for_selector("#history tbody tr")
        assert await page.locator("#bed").inner_text() == hostile_bed
        assert hostile_msg in await page.locator("#history tbody").inner_text()
        assert await page.locator("main img, section b, section i, #history script").count() == 0
        await page.wait_for_timeout(300)  # an injected onerror would have fired by now
        assert await page.evaluate("window.pwned") is None
        await shot(page, tmp_path, "central-escaping.png")
    finally:
        pub.close()
