"""A TCP proxy that delays every chunk by a fixed time each way, order kept: a broker
as far away as a cellular or satellite link, for tests of what heatd sends over one."""

from __future__ import annotations

import asyncio
import contextlib
import time

from heatd.hil.siteports import free_port


class LatencyProxy:
    """``async with LatencyProxy(target_port, delay) as proxy``: connect to
    ``proxy.port`` on 127.0.0.1 to reach ``target_port`` ``2 * delay`` seconds away."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LatencyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while chunk := await source.read(65536):
                await chunks.put((time.monotonic() + self.delay, chunk))
            await chunks.put((time.monotonic() + self.delay, b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                due, chunk = await chunks.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await reading
            sink.close()
