"""The dashboard link's limits, against a real engine and rule loop over a real Unix socket:
how many clients, how much unsent data per client, how long a command line, how many bad
messages, how fast connections are taken, and what each costs the daemon (file descriptors,
memory, the rule loop's time)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from monitord import readings as r
from monitord.link import protocol as p
from monitord.link import server as srv
from monitord.link.client import LinkClient
from tests.deploy.figures import record
from tests.link.conftest import Bed, Raw, running_bed, until, vitals
from tests.link.flood import close_all, open_connections, received

# The rule loop ticks every TICK_S; a pause this long would mean a client held the event loop
# (the command flood of the MQTT path once stalled it for 18.8 s). Generous for a loaded machine.
MAX_GAP_S = 2.0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def longest_gap(times: list[float], since: float) -> float:
    """The longest time without a rule evaluation from ``since`` until now."""
    marks = [since, *(t for t in times if t >= since), asyncio.get_running_loop().time()]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def admit(bed: Bed) -> None:
    bed.engine.submit(r.Admit("P-1", 70.0, 45, "rn1"))


async def test_clients_beyond_the_maximum_are_refused_with_a_message_and_get_in_later(sock_dir: Path) -> None:
    async with running_bed(sock_dir) as bed:
        held = [await Raw.connect(bed.socket) for _ in range(srv.MAX_CLIENTS)]
        for c in held:
            assert (await c.recv())["type"] == "hello"
        # One more, as the bedside dashboard would: it is told why and shows it.
        client = LinkClient(bed.socket, lambda msg: None, retry_s=0.1)
        task = asyncio.create_task(client.run())
        try:
            await until(lambda: "Too many dashboards" in client.last_error, "the refusal to reach the dashboard")
            assert not client.connected and not client.responding()
            assert "Too many dashboards" in client.why_not_responding()
            assert bed.server.refused >= 1 and len(bed.server.clients) == srv.MAX_CLIENTS
            # A place frees up: the dashboard gets in by itself.
            await held.pop().close()
            await until(lambda: client.connected, "the dashboard to connect once a place is free")
            assert client.responding() or client.last_heard is not None
        finally:
            await client.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for c in held:
                await c.close()


async def test_1024_connections_cost_at_most_the_limit_and_the_rule_loop_keeps_time(sock_dir: Path) -> None:
    async with running_bed(sock_dir) as bed:
        await asyncio.sleep(0.2)
        fds_before = fds()
        start = asyncio.get_running_loop().time()
        socks, attempts = await open_connections(bed.socket, 1024, timeout_s=60.0)
        try:
            assert len(socks) == 1024, f"{len(socks)} connected in {attempts} attempts"
            peak_sessions = 0

            def all_answered() -> bool:
                nonlocal peak_sessions
                peak_sessions = max(peak_sessions, len(bed.server.clients))
                return all(received(s) is not None for s in socks)

            # Every connection is answered: a place (hello) or a refusal, never left hanging.
            await until(all_answered, "every connection to be answered", timeout=60.0)
            answers = [received(s) or b"" for s in socks]
            hellos = sum(a.startswith(b'{"type":"hello"') for a in answers)
            refusals = [a for a in answers if a.startswith(b'{"type":"refused"')]
            assert hellos == srv.MAX_CLIENTS and len(refusals) == 1024 - srv.MAX_CLIENTS
            assert b"Too many dashboards" in refusals[0]
            assert peak_sessions <= srv.MAX_CLIENTS and bed.server.refused == 1024 - srv.MAX_CLIENTS
            # The daemon side holds one descriptor per session; refused ones are closed at once.
            ours = 1024  # the test's own sockets
            assert fds() - fds_before - ours <= srv.MAX_CLIENTS + 2
            # The rule loop kept its tick throughout the flood.
            assert longest_gap(bed.evaluations, start) < MAX_GAP_S
        finally:
            close_all(socks)
        await until(lambda: not bed.server.clients, "the sessions to end")
        await asyncio.sleep(0.2)
        assert fds() <= fds_before + 2  # nothing leaked
        c = await Raw.connect(bed.socket)
        assert (await c.recv())["type"] == "hello"
        await c.close()


async def test_a_client_that_does_not_read_is_dropped_and_counted_others_get_everything(sock_dir: Path) -> None:
    async with running_bed(sock_dir) as bed:
        admit(bed)
        reader = await Raw.connect(bed.socket)
        got: list[dict[str, Any]] = []

        async def read_all() -> None:
            while True:
                got.append(await reader.recv())

        reading = asyncio.create_task(read_all())
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.connect(str(bed.socket))  # connects and never reads
        await until(lambda: len(bed.server.clients) == 2, "both clients")
        slow = next(c for c in bed.server.clients if c.name != min(x.name for x in bed.server.clients))
        peak = 0
        sent = 0
        for i in range(20_000):
            bed.engine.submit(r.PainScore(i % 11, "rn1"))
            sent += 1
            if not slow.writer.is_closing():
                peak = max(peak, slow.writer.transport.get_write_buffer_size())
            if i % 50 == 0:
                await asyncio.sleep(0)
            if bed.server.dropped_slow:
                break
        await until(lambda: bed.server.dropped_slow == 1, "the stalled client to be dropped")
        entry = len(p.encode({"type": "event", "event": bed.events[-1].to_dict()}))
        assert peak <= srv.MAX_CLIENT_BUFFER + entry
        assert len(bed.server.clients) == 1
        # The reading client missed nothing.
        await until(lambda: sum(1 for m in got if m.get("type") == "event"
                                and m["event"]["data"].get("type") == "pain") == sent, "every entry at the reader")
        record("link_slow_client", tries=1, survived=bed.server.dropped_slow, lost=0, peak_buffer=peak)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        stalled.close()
        await reader.close()


async def test_two_hundred_idle_clients_do_not_grow_memory(sock_dir: Path) -> None:
    """200 connections that never read while the bed produces a steady stream of events: the
    daemon's memory stays within the per-client bound times the client limit."""
    async with running_bed(sock_dir) as bed:
        admit(bed)
        for _ in range(200):  # warm the allocator with the same traffic and no idle clients
            bed.engine.submit(r.PainScore(3, "rn1"))
        await asyncio.sleep(0.2)
        before = rss_mib()
        socks, _ = await open_connections(bed.socket, 200, timeout_s=60.0)
        try:
            assert len(socks) == 200
            await until(lambda: all(received(s) is not None for s in socks), "every connection answered", 60.0)
            # About 4 MB of events for each idle client: 800 MB if they were all buffered.
            for i in range(16_000):
                bed.engine.submit(r.PainScore(i % 11, "rn1"))
                if i % 100 == 0:
                    bed.engine.submit(vitals(hr=60 + i % 40))
                    await asyncio.sleep(0)
            grown = rss_mib() - before
            bound = srv.MAX_CLIENTS * srv.MAX_CLIENT_BUFFER / 2**20
            answered = sum(received(s) is not None for s in socks)
            record("link_idle_clients", tries=200, survived=answered, lost=0, rss_growth_mib=round(grown, 1))
            assert grown < bound + 24, f"RSS grew {grown:.1f} MiB"
            assert bed.server.dropped_slow >= srv.MAX_CLIENTS - 1
            assert len(bed.server.clients) <= srv.MAX_CLIENTS
        finally:
            close_all(socks)


async def test_a_line_over_the_limit_is_refused_without_buffering_it(sock_dir: Path) -> None:
    async with running_bed(sock_dir) as bed:
        # Just under the limit: an ordinary bad message, and the link stays.
        c = await Raw.connect(bed.socket)
        near = b'{"type":"pain","actor":"rn1","note":"' + b"x" * (p.MAX_COMMAND_BYTES - 100) + b'"}\n'
        await c.send(near)
        reply = await c.recv_type("reply")
        assert reply["ok"] is False and "Bad message" in reply["error"] and "longer" not in reply["error"]
        # 8 MiB with no newline: the link is closed once the limit is passed, long before the end.
        replies: list[dict[str, object]] = []

        async def read_replies() -> None:
            while True:
                replies.append(await c.recv_type("reply"))

        reading = asyncio.create_task(read_replies())
        written = 0
        with pytest.raises((ConnectionError, BrokenPipeError)):
            for _ in range(128):
                c.writer.write(b"x" * 65536)
                await asyncio.wait_for(c.writer.drain(), 10.0)
                written += 65536
        assert written < 2 * 2**20
        await asyncio.gather(reading, return_exceptions=True)
        # The reply says why, when it arrives before the close resets the link.
        assert all(f"longer than {p.MAX_COMMAND_BYTES} bytes" in str(m["error"]) for m in replies)
        await until(lambda: not bed.server.clients, "the client to be dropped")
        assert bed.server.dropped_bad == 1
        c2 = await Raw.connect(bed.socket)
        assert (await c2.recv())["type"] == "hello"
        await c2.close()


async def test_a_stream_of_garbage_is_cut_off_and_logged_briefly(sock_dir: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitord.link.server")
    async with running_bed(sock_dir) as bed:
        c = await Raw.connect(bed.socket)
        start = asyncio.get_running_loop().time()
        c.writer.write(b"not json\n" * 20_000)
        replies = 0
        try:
            while True:
                msg = await c.recv()
                replies += msg["type"] == "reply"
        except AssertionError:
            pass  # the server closed the link
        assert replies == srv.MAX_BAD_MESSAGES
        assert bed.server.dropped_bad == 1
        assert longest_gap(bed.evaluations, start) < MAX_GAP_S
        lines = [rec for rec in caplog.records if "bad message" in rec.getMessage()]
        assert len(lines) <= 3
        await c.close()


async def test_a_full_trend_history_hello_fits_well_within_the_client_bound(sock_dir: Path) -> None:
    async with running_bed(sock_dir) as bed:
        for _ in range(int(srv.TREND_HISTORY_S / srv.TREND_BUCKET_S) + 10):
            bed.clock.advance(srv.TREND_BUCKET_S)
            bed.engine.submit(vitals(hr=71.5, spo2=97.5), evaluate=False)
        hello = p.encode(bed.server.hello())
        assert all(len(s) == srv.TREND_HISTORY_S / srv.TREND_BUCKET_S for s in json.loads(hello)["trends"].values())
        assert len(hello) < srv.MAX_CLIENT_BUFFER / 2, len(hello)
        c = await Raw.connect(bed.socket)
        assert (await c.recv())["type"] == "hello"
        assert (await c.recv())["type"] == "snapshot"
        assert bed.server.dropped_slow == 0
        await c.close()
