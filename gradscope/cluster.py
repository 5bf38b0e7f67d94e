"""Runs on a Dask cluster (``--scheduler ADDRESS``): connecting, failing fast, and what a loss means.

Every command that runs many independent pieces of work (compare's and reproduce's trainings,
train's seeds, sweep's grid points) hands them here when given a scheduler, and to local processes
(parallel.py) otherwise. A piece is ``function(*call)`` of picklable arguments whose result depends
on the arguments alone (each run is seeded by its own config, never by the worker), so a cluster
returns the same numbers, bit for bit, as one process does. Dask is imported only here, and only
when a scheduler is given.

Failing fast. The address is checked before Dask is imported (a second): a malformed one is
refused at once, and at a tcp:// address a plain socket must connect, and the other end speak
first as a scheduler does, within CONNECT_SECONDS (refused: at once; no answer: after that long).
Only then does Dask's client start (whose own wait for the scheduler's first word has no limit).
Every failure is one ``InputError`` line (exit 2); a half-made client is closed while its event
loop still runs (else ``Client.__del__`` hangs 20 s at exit and prints a traceback).

Losses, never silent:

- a worker lost while it ran a piece (the scheduler's "remove-worker" event lists the piece): Dask
  runs the piece again elsewhere; a warning (logger ``gradscope.cluster``) says which worker and
  which run. A piece lost with a second worker is not run a third time: ``Lost``;
- the scheduler lost (the connection drops: Dask cancels every piece not yet returned): ``Lost``,
  naming the address.

``Lost`` is an InputError (exit 2) that carries the pieces finished so far (``finished``, by index),
so that a command can report them as a partial result (``Partial``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import re
import socket
import threading
import uuid
from typing import Any, Callable, Iterator, Sequence

from .errors import InputError
from .extras import install_hint

CONNECT_SECONDS = 2.5  # a TCP connection and the scheduler's first word, from the start
HANDSHAKE_SECONDS = 10.0  # then Dask's client, once something that speaks first answers there
CLOSE_SECONDS = 2.0
POLL_SECONDS = 0.5  # how often the wait for results wakes (Ctrl-C, SIGTERM are seen in between)
TCP_SCHEMES = ("tcp", "tls", "ws", "wss")
OTHER_SCHEMES = ("inproc", "ucx")

log = logging.getLogger(__name__)


class Lost(InputError):
    """The cluster lost work: the scheduler, or one piece with two workers. ``finished`` holds the
    results that came back before (index of the call -> result), filled in by whoever collected them."""

    def __init__(self, message: str, finished: dict[int, Any] | None = None) -> None:
        super().__init__(message)
        self.finished = {} if finished is None else finished


@dataclasses.dataclass
class Partial:
    """What a result lacks when the cluster was lost mid-run (the document's ``partial``; null when
    every run finished).

    error : the line printed on stderr (which address, what was lost).
    finished, total : runs that came back, and runs there were.
    missing : each run that did not come back, as the command names its runs (compare: mitigation
        and seed; train: seed; reproduce: arm and seed; sweep: cell, activation, x and y).
    """

    error: str
    finished: int
    total: int
    missing: list[dict]


def _host_port(address: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of a scheduler address; host and port None for inproc:// and ucx://.
    A malformed address is an InputError naming what is wrong."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme in OTHER_SCHEMES:
        return scheme, None, None
    if scheme not in TCP_SCHEMES:
        raise InputError(f"--scheduler {address}: unknown scheme {scheme!r}; a scheduler's address is "
                         "tcp://HOST:PORT (or tls://, ws://, wss://, inproc://, ucx://)")
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})/?", rest)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise InputError(f"--scheduler {address}: not an address; give tcp://HOST:PORT "
                         "(an IPv6 host in brackets: tcp://[::1]:8786)")
    return scheme, match.group(1).strip("[]"), int(match.group(2))


def _reachable(scheme: str, host: str, port: int, seconds: float) -> str | None:
    """None if a TCP connection to host:port opens within ``seconds`` (name lookup included) and,
    for tcp://, the other end speaks first as a Dask scheduler does (its handshake); else why not.
    (Dask's client waits for that handshake without a time limit.) The attempt runs on a daemon
    thread, so a resolver that hangs cannot hold us longer either."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds) as sock:
                if scheme == "tcp" and not sock.recv(1):  # tls, ws: the client speaks first
                    outcome.append("the connection was closed at once: not a Dask scheduler")
                    return
            outcome.append(None)
        except socket.timeout:
            outcome.append(f"no answer within {seconds:g} s")
        except OSError as exc:
            outcome.append(exc.strerror or str(exc) or type(exc).__name__)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(seconds + 0.1)
    return outcome[0] if outcome else f"no answer within {seconds:g} s"


def _new_client(address: str) -> tuple[Any, str | None]:
    """(a Dask client of the scheduler at address, None), or (None, why not). A client whose
    constructor failed is closed here, at once, and nothing keeps a reference to it."""
    from dask.distributed import Client

    try:
        return Client(address, timeout=HANDSHAKE_SECONDS, set_as_default=False), None
    except Exception as exc:  # noqa: BLE001 - whatever Dask raises, the address is the user's to fix
        # MemoryError: it read a frame length from something that answers but is not Dask
        why = "what answers there is not a Dask scheduler" if isinstance(exc, MemoryError) else str(exc)
        client = _client_in(exc.__traceback__)
        exc.__traceback__ = None  # the frames hold the client: let it go with them
    if client is not None:
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_SECONDS)
    return None, (why.splitlines() or ["the Dask client did not start"])[0]


def _client_in(traceback: Any) -> Any:
    """The half-made Client in the constructor's frames of a traceback (its ``self``), or None."""
    from dask.distributed import Client

    while traceback is not None:
        candidate = traceback.tb_frame.f_locals.get("self")
        if isinstance(candidate, Client):
            return candidate
        traceback = traceback.tb_next
    return None


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``, or an InputError: within CONNECT_SECONDS
    where nothing, or nothing that speaks first, answers at a TCP address (module docstring)."""
    scheme, host, port = _host_port(address)  # a typo is refused at once
    if not _installed("dask", "distributed"):
        raise InputError(f"--scheduler needs Dask: {install_hint('dask')}")
    if host is not None:  # before Dask's import (a second): the probe has the whole budget
        why = _reachable(scheme, host, port, CONNECT_SECONDS)
        if why is not None:
            raise InputError(f"--scheduler {address}: cannot reach the Dask scheduler ({why})")
    client, why = _new_client(address)
    if client is None:
        raise InputError(f"--scheduler {address}: cannot reach the Dask scheduler ({why})")
    return client


def _installed(*names: str) -> bool:
    """Whether these packages can be imported (found, not imported: that takes a second)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in names)
    except (ImportError, ValueError):  # a module set to None in sys.modules (as the tests do)
        return False


def workers(client: Any) -> int:
    """The workers the scheduler has now (at least 1: work waits for the first to come)."""
    return max(1, len(client.scheduler_info().get("workers", {})))


def _one_blas_thread(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` with BLAS on one thread, as in a local worker process (parallel.py): a
    worker runs several pieces at once, and the pieces are small."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        return function(*args)


def _key(label: str) -> str:
    """A Dask key that says what runs (the dashboard shows it) and is unique to this submission."""
    return "gradscope-" + re.sub(r"[^A-Za-z0-9_.+=-]+", "-", label)[:60] + "-" + uuid.uuid4().hex[:12]


@contextlib.contextmanager
def _dask_quiet() -> Iterator[None]:
    """Dask's client logs its own account of a lost connection (several lines, tracebacks); the
    Lost error says it in one. Its loggers are set back when the block ends."""
    loggers = [logging.getLogger(name) for name in ("distributed.client", "distributed.batched",
                                                    "distributed.core", "distributed.comm")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def on_cluster(function: Callable[..., Any], calls: Sequence[tuple], address: str,
               label: Callable[[int], str] = str, client: Any = None) -> Iterator[tuple[int, Any]]:
    """``function(*call)`` for every call on the Dask cluster at ``address``; yields (index of the
    call, its result) as each comes back. A piece that raises raises here (the same exception);
    a lost scheduler, or a piece lost with a second worker, raises Lost (module docstring).
    Stopping early (an error, Ctrl-C, closing the generator) cancels what is left on the cluster.

    label(i) names call i in warnings, errors and Dask's keys; client : one from ``connect`` (None:
    connect here). The client is closed when the generator ends, either way.
    """
    client = client or connect(address)
    events: queue.SimpleQueue = queue.SimpleQueue()
    futures: dict[int, Any] = {}
    by_key: dict[str, int] = {}
    losses: dict[int, list[str]] = {}

    def submit(i: int) -> None:
        future = client.submit(_one_blas_thread, function, *calls[i], key=_key(label(i)), pure=False)
        futures[i] = future
        by_key[future.key] = i
        future.add_done_callback(lambda f, i=i: events.put(("done", i, f)))

    def lost_worker(message: dict) -> None:
        worker = message.get("worker", "a worker")
        for key in message.get("processing-tasks") or ():
            i = by_key.get(key)
            if i is None or i not in futures:
                continue
            losses.setdefault(i, []).append(worker)
            if len(losses[i]) > 1:
                raise Lost(f"--scheduler {address}: {label(i)} was lost with two workers "
                           f"({', '.join(losses[i])}); not run a third time")
            log.warning("worker %s was lost while it ran %s; running it again (once)", worker, label(i))

    with _dask_quiet():
        try:
            client.subscribe_topic("all", lambda event: events.put(("event", event)))
            for i in range(len(calls)):
                submit(i)
            while futures:
                try:
                    kind, *item = events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if kind == "event":
                    _, message = item[0]
                    if isinstance(message, dict) and message.get("action") == "remove-worker":
                        lost_worker(message)
                    continue
                i, future = item
                if futures.get(i) is not future:  # an earlier submission's, already replaced
                    continue
                if future.status == "finished":
                    result = future.result()
                    del futures[i]
                    future.release()  # a worker lost later must not recompute it
                    yield i, result
                elif future.status == "cancelled":
                    why = ("lost the connection to the Dask scheduler" if _scheduler_lost(client, future)
                           else f"{label(i)} was cancelled on the cluster")
                    raise Lost(f"--scheduler {address}: {why}")
                elif _killed_worker(future) and len(losses.get(i, ())) <= 1:
                    # the scheduler gave up on the worker that died (allowed-failures = 0): our one retry
                    if not losses.get(i):
                        losses[i] = ["a worker"]
                        log.warning("a worker was lost while it ran %s; running it again (once)", label(i))
                    submit(i)
                elif _killed_worker(future):
                    raise Lost(f"--scheduler {address}: {label(i)} was lost with two workers; not run a third time")
                else:
                    future.result()  # the piece's own error, raised as it was raised
        except BaseException:  # an error, Ctrl-C, SIGTERM: nothing of ours left running on the cluster
            with contextlib.suppress(Exception):
                client.cancel(list(futures.values()), force=True)
            raise
        finally:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic("all")
            with contextlib.suppress(Exception):
                client.close(timeout=CLOSE_SECONDS)


def _scheduler_lost(client: Any, future: Any) -> bool:
    """Whether a cancelled future was cancelled because the client lost its scheduler (Dask gives
    the reason in the error its result raises), not by someone on the cluster."""
    if client.status != "running":
        return True
    try:
        future.result(timeout=0)
    except Exception as exc:  # noqa: BLE001 - FutureCancelledError, whose text holds the reason
        return "scheduler-connection-lost" in str(exc)
    return False


def _killed_worker(future: Any) -> bool:
    """Whether the future failed because the scheduler gave up on the workers that ran it."""
    from distributed import KilledWorker

    return future.status == "error" and isinstance(future.exception(), KilledWorker)
