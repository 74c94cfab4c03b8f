"""The blocking portal of :mod:`mpr_storage.sync`: one event loop on one daemon thread per
process, which runs the async functions for callers on any other thread (as
``anyio.from_thread``'s portal does), settles every call, and survives forks and exits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor  # imported now: not allowed at exit
from typing import Any, ParamSpec, TypeVar

__all__ = ["Portal", "RunningLoopError", "new_event_loop", "refuse_in_loop"]

P = ParamSpec("P")
T = TypeVar("T")

_ITER_BATCH = 1000  # objects per round trip of iter_objects: one S3 listing page
_STOP_TIMEOUT = 10.0  # seconds the exit waits for the loop's cleanup (it's a daemon thread)
_THREAD_DIED = "mpr_storage.sync: the event-loop thread stopped during the call"


class RunningLoopError(RuntimeError):
    """A blocking function was called on a thread that runs an event loop.

    Blocking there would freeze that loop (and deadlock if it is the one doing the work): await
    the same function of :mod:`mpr_storage` instead, or call the blocking form from a worker
    thread (``await asyncio.to_thread(...)``).
    """


def refuse_in_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if name == "iter_objects":
        usage = f"async for obj in mpr_storage.{name}(...)"
    else:
        usage = f"await mpr_storage.{name}(...)"
    raise RunningLoopError(
        f"mpr_storage.sync.{name}() blocks, and this thread is running an event loop: "
        f"use `{usage}` here instead (or run the blocking call in asyncio.to_thread)"
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where uvloop is installed (the ``mpr-storage[uvloop]`` extra; the loop
    uvicorn picks too), else asyncio's, silently: the loop the portal thread runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# --- the portal: one event loop on one daemon thread per process -----------------------------


class _Call:
    """One coroutine submitted to the loop thread, and the future its caller waits on."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._task: asyncio.Task[Any] | None = None
        self._lock = threading.Lock()
        self._abandoned = False

    def start(self) -> None:  # on the loop thread
        with self._lock:
            if self._abandoned:
                return
            self._task = asyncio.get_running_loop().create_task(self.coro)
        self._task.add_done_callback(self._settle)

    def abandon(self, error: BaseException) -> None:
        """Settle the call with ``error`` if the loop never started it (its thread is gone)."""
        with self._lock:
            if self._task is not None or self._abandoned:
                return
            self._abandoned = True
        self.coro.close()
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.future.set_exception(error)

    def cancel(self) -> None:  # on the loop thread, always after start()
        if self._task is not None:
            self._task.cancel()

    def _settle(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if task.cancelled():
                self.future.set_exception(RuntimeError(_THREAD_DIED))
            elif (exc := task.exception()) is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(task.result())

    def wait(self, thread: threading.Thread) -> None:
        # The main thread wakes up every 0.1 s so that Ctrl-C is seen even where a blocked
        # lock can't be interrupted (Windows, _thread.interrupt_main()); every thread checks
        # that the loop thread still runs, so no call waits forever on a dead loop.
        timeout = 0.1 if threading.current_thread() is threading.main_thread() else 1.0
        while not self.future.done():
            concurrent.futures.wait([self.future], timeout)
            if not thread.is_alive() and not self.future.done():
                self.abandon(RuntimeError(_THREAD_DIED))  # closes the coroutine if not started
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    self.future.set_exception(RuntimeError(_THREAD_DIED))


class Portal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._exited = False  # the atexit hook ran: calls made after it stop the loop again
        self._users = 0  # calls and iterations in progress
        self._users_lock = threading.RLock()  # re-entrant: a finaliser may leave an iteration
        # A forked child's copy of the parent's loop (see _after_fork_in_child).
        self._inherited: list[object] = []

    def call(self, func: Callable[P, Coroutine[Any, Any, T]], /, *a: P.args, **kw: P.kwargs) -> T:
        """Run ``func(*a, **kw)`` on the loop thread and return its result."""
        refuse_in_loop(func.__name__)
        result: T = self._run(func(*a, **kw))
        return result

    def iterate(
        self, func: Callable[P, AsyncIterator[T]], /, *a: P.args, **kw: P.kwargs
    ) -> Generator[T, None, None]:
        """Iterate ``func(*a, **kw)`` on the loop thread, a batch per round trip."""
        refuse_in_loop(func.__name__)
        return self._pull(func.__name__, func(*a, **kw))

    def _pull(self, name: str, source: AsyncIterator[T]) -> Generator[T, None, None]:
        failed: list[Exception] = []

        async def batch() -> list[T]:
            items: list[T] = []
            try:
                while len(items) < _ITER_BATCH:
                    items.append(await anext(source))
            except StopAsyncIteration:
                pass
            except Exception as exc:
                if not items:
                    raise
                failed.append(exc)  # hand out the items before it, as async iteration would
            return items

        self._enter()
        try:
            while True:
                refuse_in_loop(name)
                items: list[T] = self._run(batch())
                if not items:
                    return
                yield from items
                if failed:
                    raise failed[0]
        except GeneratorExit:
            # Left early (close() or garbage collection): close the listing on its loop now.
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RunningLoopError):
                    refuse_in_loop(name)
                    self._run(aclose())
            raise
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._users_lock:
            self._users += 1

    def _leave(self) -> None:
        with self._users_lock:
            self._users -= 1
            last = self._users == 0
        if last and self._exited:  # after the exit hook: nobody else would close this loop
            self.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        call = _Call(coro)
        self._enter()
        try:
            with self._lock:
                try:
                    loop, thread = self._running_loop()
                    loop.call_soon_threadsafe(call.start)
                except BaseException:
                    coro.close()
                    raise
        except BaseException:
            self._leave()
            raise
        try:
            call.wait(thread)
        except BaseException:
            # Ctrl-C (or another exception raised in this thread): cancel the operation and
            # wait until its shielded cleanup is done. A second Ctrl-C ends the wait.
            if not call.future.done():
                with contextlib.suppress(RuntimeError):  # the loop is already gone
                    loop.call_soon_threadsafe(call.cancel)
                call.wait(thread)
            raise
        finally:
            self._leave()
        result: T = call.future.result()
        return result

    def _running_loop(self) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:  # locked
        if self._loop is None or self._thread is None:
            loop = new_event_loop()
            stop = asyncio.Event()
            ready: list[BaseException | None] = []
            started = threading.Event()
            thread = threading.Thread(
                target=self._serve,
                args=(loop, stop, ready, started),
                name="mpr-storage-loop",
                daemon=True,
            )
            try:
                thread.start()
                started.wait()
                if ready[0] is not None:
                    raise ready[0]
            except Exception as exc:
                # E.g. at interpreter exit: Python 3.12 refuses new threads there.
                loop.close()
                raise RuntimeError(
                    f"mpr_storage.sync: cannot start its event-loop thread: {exc}"
                ) from exc
            self._loop, self._stop, self._thread = loop, stop, thread
        return self._loop, self._thread

    def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        stop: asyncio.Event,
        ready: list[BaseException | None],
        started: threading.Event,
    ) -> None:
        """The loop thread: ``asyncio.run()`` semantics without ``shutdown_default_executor()``,
        which starts a thread, refused at exit by Python 3.12.0-1; the executor is joined here.
        ``ready`` gets ``None``, or the error that kept the loop from running."""
        try:
            executor = _Executor(thread_name_prefix="mpr-storage-io")
            loop.set_default_executor(executor)
        except BaseException as exc:  # reported to the caller by _running_loop
            ready.append(exc)
            started.set()
            return
        ready.append(None)
        started.set()
        try:
            loop.run_until_complete(stop.wait())
        finally:
            with self._lock:  # ended by a SystemExit raised on it, not stop(): replace it
                if self._loop is loop:
                    self._loop = self._stop = self._thread = None
            try:
                while tasks := asyncio.all_tasks(loop):
                    for task in tasks:
                        task.cancel()
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                # Finalises the per-loop default Storage, which closes its client.
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                executor.shutdown(wait=True)
                loop.close()

    def stop_at_exit(self) -> None:
        """The atexit hook: stop the loop thread; calls made later (by atexit callbacks that
        run after this one) each start a loop thread and stop it when they return."""
        self._exited = True
        self.stop()

    def stop(self, timeout: float | None = _STOP_TIMEOUT) -> None:
        """Stop the loop thread (its loop closes the default client); the next call starts a
        new one. Calls still running get a ``RuntimeError``."""
        with self._lock:
            loop, stop, thread = self._loop, self._stop, self._thread
            self._loop = self._stop = self._thread = None
            if loop is None or stop is None or thread is None:
                return
            with contextlib.suppress(RuntimeError):  # its thread died and closed it
                loop.call_soon_threadsafe(stop.set)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _after_fork_in_child(self) -> None:
        # The child has a copy of the parent's loop but not its thread. Never run, close or let
        # the garbage collector finalise that copy: its selector and self-pipe are shared with
        # the parent, and unregistering them here would break the parent's loop. Keep it (and
        # the client it holds) as it is and start a fresh loop on first use.
        if self._loop is not None:
            self._inherited.append((self._loop, self._stop, self._thread))
        self._lock = threading.Lock()
        self._users_lock = threading.RLock()
        self._users = 0
        self._loop = self._stop = self._thread = None


class _Executor(ThreadPoolExecutor):
    """The loop thread's default executor (``run_in_executor(None, ...)``). At interpreter exit
    ``ThreadPoolExecutor`` refuses new work ("cannot schedule new futures after interpreter
    shutdown"); a call made from an atexit callback then runs such jobs on the loop thread
    instead of failing: blocking that loop is harmless at exit."""

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        try:
            return super().submit(fn, *args, **kwargs)
        except RuntimeError:
            if self._shutdown:  # this executor was shut down: a real error
                raise
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future
