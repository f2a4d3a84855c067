"""Raw HTTP/1.1 over asyncio sockets, for the clients aiohttp's own client will not be: a body that never comes, a
header sent a byte at a time, requests pipelined behind a refused body, a header too long."""

from __future__ import annotations

import asyncio

from gateway_doubles import GatewayHarness


async def connect(gw: GatewayHarness, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                                           asyncio.StreamWriter]:
    """A connection to the gateway from ``source`` (any 127.0.0.0/8 address: each is a caller of its own)."""
    server = gw.client.server
    return await asyncio.open_connection(server.host, server.port, local_addr=(source, 0))


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names), body (by its Content-Length)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.rstrip("\r\n").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the gateway closed the connection: the next read ends (or is reset) without an answer."""
    try:
        return await reader.read(65536) == b""
    except ConnectionResetError:
        return True
