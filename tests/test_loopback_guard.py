"""The test run's own guard (tests/loopback_guard.py): loopback only, ever."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.loopback_guard import OutsideTraffic


@pytest.mark.parametrize("host", ["192.0.2.1", "2001:db8::1"])  # documentation ranges
def test_a_connection_outside_loopback_is_refused_before_anything_is_sent(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(OutsideTraffic):
        sock.connect((host, 80))


async def test_asyncio_connections_outside_loopback_are_refused_too() -> None:
    with pytest.raises(OutsideTraffic):
        await asyncio.open_connection("192.0.2.1", 80)


async def test_loopback_connections_go_through() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


@pytest.mark.parametrize("name", ["h", "example.com", b"models.example"])
def test_looking_up_a_name_is_refused_before_a_dns_query(name: str | bytes) -> None:
    with pytest.raises(OutsideTraffic):
        socket.getaddrinfo(name, 80)


async def test_asyncio_lookups_of_names_are_refused_too() -> None:
    with pytest.raises(OutsideTraffic):
        await asyncio.open_connection("ok", 80)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", None])
def test_local_lookups_go_through(host: str | None) -> None:
    assert socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
