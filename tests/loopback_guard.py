"""Every connection a test process opens goes to this machine.

Installed for the whole run by tests/conftest.py: a socket of the test process that
connects to an internet address outside the loopback range raises instead of sending
anything, and so does looking up a host name other than ``localhost`` (the lookup
itself would ask a DNS server elsewhere). Processes a test starts, such as
``python -m bot``, get only loopback URLs from the tests' fakes; this catches a test
of ours that would reach out.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOCAL_NAMES = frozenset({"localhost"})


class OutsideTraffic(OSError):
    """A test tried to connect somewhere other than loopback."""


def check_address(family: int, address: Any) -> None:
    """Raise OutsideTraffic for an IPv4/IPv6 address that is not loopback."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets and the like stay on this machine
    host = str(address[0])
    if host in LOCAL_NAMES:
        return
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = False  # a name: connect() would resolve it and reach out
    if not loopback:
        raise OutsideTraffic(f"tests talk to loopback only; refused a connection to {address!r}")


def check_name(host: Any) -> None:
    """Raise OutsideTraffic for a host name whose lookup would leave this machine."""
    if host is None:
        return  # a passive (bind) lookup
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in ("", *LOCAL_NAMES):
        return
    try:
        ipaddress.ip_address(name.split("%")[0])  # a number is not looked up
    except ValueError:
        raise OutsideTraffic(f"tests talk to loopback only; refused to look up {name!r}") from None


def _checked_lookup(lookup: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check_name(host)
        return lookup(host, *args, **kwargs)

    return getaddrinfo


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    def connect(sock: socket.socket, address: Any) -> Any:
        check_address(sock.family, address)
        return method(sock, address)

    return connect


@contextmanager
def loopback_only() -> Iterator[None]:
    """Refuse non-loopback connections from this process while the block runs."""
    originals = socket.socket.connect, socket.socket.connect_ex
    lookup = socket.getaddrinfo
    socket.socket.connect = _guarded(originals[0])  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(originals[1])  # type: ignore[method-assign]
    socket.getaddrinfo = _checked_lookup(lookup)
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = originals  # type: ignore[method-assign]
        socket.getaddrinfo = lookup
