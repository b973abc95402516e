"""Out of process: documents from a bluesky 0MQ proxy into the live plugin.

The RunEngine host publishes with ``bluesky.callbacks.zmq.Publisher`` to a
``bluesky-0MQ-proxy``; :func:`listen` subscribes with bluesky's own
``RemoteDispatcher`` and feeds the documents to a callback (a
:class:`~.service.LiveInversion`, plus the raw-run writer when wanted), so
inference can run on a GPU host while the RunEngine runs elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

log = logging.getLogger(__name__)


def listen(address: str, callbacks, *, prefix: bytes = b"", ready: threading.Event | None = None,
           stop: threading.Event | None = None) -> None:
    """Dispatch documents from the proxy at ``address`` until SIGINT/SIGTERM or ``stop``.

    Parameters
    ----------
    address : str
        ``host:port`` of the proxy's *outbound* (subscriber) side.
    callbacks : list of callable
        Each gets ``(name, doc)`` for every document, in order.
    prefix : bytes
        Only documents published with this prefix (all when empty).
    ready : threading.Event, optional
        Set once subscribed (tests and services wait on it).
    stop : threading.Event, optional
        Set it (from another thread) to stop listening.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    dispatcher = RemoteDispatcher(address, prefix=prefix)
    for cb in callbacks:
        dispatcher.subscribe(cb)

    def request_stop(*_):
        dispatcher.loop.call_soon_threadsafe(_cancel, dispatcher)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
    if ready is not None:
        dispatcher.loop.call_soon(ready.set)
    if stop is not None:
        def watch():
            stop.wait()
            request_stop()

        threading.Thread(target=watch, daemon=True).start()
    try:
        dispatcher.start()
    except asyncio.CancelledError:
        pass
    log.info("listener on %s stopped", address)


def _cancel(dispatcher):
    if dispatcher._task is not None:
        dispatcher._task.cancel()


def start_proxy(in_port: int, out_port: int) -> threading.Thread:
    """Run a bluesky 0MQ proxy in a daemon thread (for tests and the demo).

    In deployment run ``bluesky-0MQ-proxy IN_PORT OUT_PORT`` as a service instead.
    """
    from bluesky.callbacks.zmq import Proxy

    proxy = Proxy(in_port, out_port)
    thread = threading.Thread(target=proxy.start, name="bluesky-0mq-proxy", daemon=True)
    thread.start()
    return thread


class ListenerThread:
    """A :func:`listen` thread behind a local 0MQ proxy, with a connected :class:`Publisher` (tests, demo).

    0MQ drops what is published before the subscription has reached the proxy, so the constructor
    publishes empty runs (not rocking curves, hence ignored) until the listener hears one.

    Attributes
    ----------
    publisher : bluesky.callbacks.zmq.Publisher
        Subscribe it to a RunEngine.
    subscribed, connected : bool
        Whether the listener subscribed within ``timeout`` and heard a probe run.
    """

    def __init__(self, in_port: int, out_port: int, callbacks, *, timeout: float = 10.0, tries: int = 200):
        from bluesky.callbacks.zmq import Publisher
        from event_model import compose_run

        heard = threading.Event()
        self._ready, self._stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=listen, args=(f"127.0.0.1:{out_port}", [*callbacks, lambda *_: heard.set()]),
            kwargs={"ready": self._ready, "stop": self._stop}, daemon=True)
        self.thread.start()
        self.subscribed = self._ready.wait(timeout)
        self.publisher = Publisher(f"127.0.0.1:{in_port}")
        for _ in range(tries):
            probe = compose_run()
            self.publisher("start", probe.start_doc)
            self.publisher("stop", probe.compose_stop())
            if heard.wait(0.1):
                break
        self.connected = heard.is_set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the listener, wait for its thread and close the publisher."""
        self._stop.set()
        self.thread.join(timeout)
        self.publisher.close()
