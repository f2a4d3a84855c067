"""The baseline for ``bench gateway``: a bare aiohttp handler that forwards the raw body to Kafka (acks=all,
idempotent, the gateway's compression) with no auth, no validation, no Avro and no transaction. The gateway's
throughput is reported as a ratio of this one's.

    python -m caliper_pipeline.bench.bare_forwarder BOOTSTRAP TOPIC PORT [COMPRESSION: lz4 (default), zstd, none]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer

from gateway.event_loop import new_event_loop

PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TOPIC = web.AppKey("topic", str)


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    await request.app[PRODUCER].send_and_wait(request.app[TOPIC], body)
    return web.json_response({"status": "success"})


def build_forwarder(bootstrap_servers: str, topic: str, compression: str | None = "lz4") -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[TOPIC] = topic

    async def producer(app: web.Application) -> AsyncIterator[None]:
        app[PRODUCER] = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True,
                                         linger_ms=2, compression_type=compression)
        await app[PRODUCER].start()
        yield
        await app[PRODUCER].stop()

    app.cleanup_ctx.append(producer)
    app.router.add_post("/caliper/event", forward)
    return app


if __name__ == "__main__":
    bootstrap, topic, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    codec = sys.argv[4] if len(sys.argv) > 4 else "lz4"
    web.run_app(build_forwarder(bootstrap, topic, None if codec == "none" else codec), host="127.0.0.1", port=port,
                access_log=None, print=None,
                loop=new_event_loop())
