"""A TCP link between one instance and Redis, so that a fault can cut that instance off alone.

    python -m loadtest.harness.link LISTEN_PORT TARGET_PORT

Relays every connection made to 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT, byte for byte. The local
stack puts one in front of Redis for each instance (`Stack(redis_links=True)`); stopping it (SIGSTOP) is a
network partition for that instance only: its packets go unanswered, and flow again when it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(listen_port: int, target_port: int) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()  # Redis is down: so is the link, as a refused connection
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(relay, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    listen_port, target_port = (int(arg) for arg in (argv or sys.argv[1:]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listen_port, target_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
