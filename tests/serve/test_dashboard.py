"""The dashboard in a real headless Chromium: loads, lists, forgets, filters, sorts, explains.

Screenshots go to the ``artifacts`` folder ($PORTBOOK_TEST_ARTIFACTS, else
``screenshots/`` under pytest's base temporary directory).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import portbook
from portbook import Store
from tests.serve.conftest import Program, url_of

pytestmark = pytest.mark.browser
expect: Any = None  # playwright's expect, imported with the browser


def comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


@pytest.fixture
def page(browser: Any, session_serve: Program) -> Iterator[Any]:
    """A fresh browser context on the dashboard, polling every 0.3 s; checks what it loaded."""
    global expect
    from playwright.sync_api import expect as playwright_expect

    expect = playwright_expect
    base = url_of(session_serve)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    tab = context.new_page()
    errors: list[str] = []
    loaded: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda request: loaded.append(request.url))
    tab.goto(base + "?refresh=0.3")
    expect(tab.locator("#sockets tbody tr").first).to_be_visible()
    yield tab
    context.close()
    assert errors == []
    # Nothing from anywhere but the server itself: no fonts, scripts or images from the internet.
    assert loaded and all(url.startswith((base, "data:")) for url in loaded), loaded


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def test_it_lists_a_listener_the_test_opened_and_shows_it_gone_after_close(
    page: Any, artifacts: Path
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    row = page.locator(f'#sockets tbody tr[data-port="{port}"]')
    try:
        expect(row).to_have_count(1)
        expect(row).to_contain_text("127.0.0.1")
        expect(row).to_contain_text(f"{comm()}[")
        expect(row).to_have_class(re.compile(r"\bexposure-loopback\b"))
        expect(page.locator(f'#events li.opened[data-port="{port}"]')).to_have_count(1)
        page.screenshot(path=str(artifacts / "dashboard-listener-open.png"), full_page=True)
    finally:
        sock.close()
    expect(row).to_have_count(0)
    closed = page.locator(f'#events li.closed[data-port="{port}"]')
    expect(closed).to_have_count(1)
    expect(closed).to_contain_text(f"- tcp 127.0.0.1:{port} LISTEN")
    page.screenshot(path=str(artifacts / "dashboard-listener-closed.png"), full_page=True)


def test_it_filters_as_you_type(page: Any, listener: socket.socket, artifacts: Path) -> None:
    port = str(listener.getsockname()[1])
    expect(page.locator(f'#sockets tbody tr[data-port="{port}"]')).to_have_count(1)
    page.fill("#filter", port)
    rows = page.locator("#sockets tbody tr")
    expect(page.locator("#count")).to_have_text(re.compile(r"^\d+ of \d+ sockets$"))
    expect(rows.first).to_contain_text(port)
    for text in rows.all_inner_texts():
        assert port in text
    page.screenshot(path=str(artifacts / "dashboard-filtered.png"), full_page=True)
    page.fill("#filter", "no-such-program-anywhere")
    expect(rows).to_have_count(0)
    expect(page.locator("#count")).to_have_text(re.compile(r"^0 of [1-9]\d* sockets$"))


def test_it_sorts_by_any_column(page: Any, listener: socket.socket) -> None:
    def ports() -> list[int]:
        return [
            int(p)
            for p in page.locator("#sockets tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.port)"
            )
        ]

    header = page.locator('#sockets th[data-key="port"]')
    expect(header).to_have_attribute("aria-sort", "ascending")
    seen = ports()  # once: the table may be redrawn between two readings
    assert seen == sorted(seen)
    header.click()
    expect(header).to_have_attribute("aria-sort", "descending")
    seen = ports()
    assert seen == sorted(seen, reverse=True)
    program = page.locator('#sockets th[data-key="program"]')
    program.click()
    expect(program).to_have_attribute("aria-sort", "ascending")
    expect(header).not_to_have_attribute("aria-sort", re.compile(".*"))
    names = page.locator("#sockets tbody tr td:nth-child(6)").evaluate_all(
        "cells => cells.map(c => c.textContent)"
    )
    # The page sorts as the browser compares text (localeCompare): check with the browser.
    in_order = page.evaluate(
        "names => names.every((n, i) => i === 0 || names[i - 1].localeCompare(n) <= 0)", names
    )
    assert in_order, names


def test_your_names_are_highlighted(
    page: Any, listener: socket.socket, session_store: Path, artifacts: Path
) -> None:
    port = listener.getsockname()[1]
    with Store(session_store) as store:
        portbook.assign("dashboard-api", port=port, store=store, listeners=lambda p, q: (False, ()))
    row = page.locator(f'#sockets tbody tr[data-port="{port}"]')
    expect(row).to_have_class(re.compile(r"\bnamed\b"))
    expect(row.locator("td.name")).to_have_text("dashboard-api")
    named = page.locator("#names tbody tr", has_text="dashboard-api")
    expect(named).to_contain_text("yes")
    page.fill("#filter", "dashboard-api")
    expect(page.locator("#sockets tbody tr")).to_have_count(1)
    page.screenshot(path=str(artifacts / "dashboard-named.png"), full_page=True)


def test_a_click_on_a_port_shows_what_the_book_says(page: Any, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    expected = portbook.lookup(port, "tcp")
    page.locator(f'#sockets tbody tr[data-port="{port}"] td.port button').click()
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#details-title")).to_have_text(f"tcp/{port} in the book")
    entries = page.locator("#details-entries li")
    expect(entries).to_have_count(max(1, len(expected)))
    if expected:
        expect(entries.first).to_contain_text(expected[0].description)


def test_http_listeners_become_links_and_exposure_is_marked(page: Any) -> None:
    """The page's own rules, run in the browser on made-up sockets."""
    base = {"protocol": "tcp", "state": "LISTEN", "family": 4, "service": None}
    cases = [
        (
            {
                **base,
                "local_address": "127.0.0.1",
                "local_port": 80,
                "service": "http",
                "exposure": "loopback",
            },
            [],
            "http://127.0.0.1:80/",
        ),
        (
            {
                **base,
                "local_address": "0.0.0.0",
                "local_port": 443,
                "service": "https",
                "exposure": "all",
            },
            [],
            "https://127.0.0.1:443/",
        ),
        (
            {
                **base,
                "local_address": "::1",
                "local_port": 8000,
                "family": 6,
                "service": "irdmi",
                "exposure": "loopback",
            },
            [
                {
                    "name": "dev-http-alt",
                    "description": "Django and Python http.server",
                    "software": "Django",
                }
            ],
            "http://[::1]:8000/",
        ),
        (
            {
                **base,
                "local_address": "127.0.0.1",
                "local_port": 5432,
                "service": "postgresql",
                "exposure": "loopback",
            },
            [],
            None,
        ),
        (
            {
                **base,
                "protocol": "udp",
                "state": "UNCONN",
                "local_address": "127.0.0.1",
                "local_port": 80,
                "service": "http",
                "exposure": "loopback",
            },
            [],
            None,
        ),
    ]
    for sock, entries, link in cases:
        got = page.evaluate(
            "([s, e]) => window.portbook.linkFor(s, e, '127.0.0.1')", [sock, entries]
        )
        assert got == link, sock
    classes = page.evaluate("() => window.portbook.rowClasses({exposure: 'all'}, 'api')")
    assert classes == ["exposure-all", "named"]
