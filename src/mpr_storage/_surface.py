"""The public surface, written once: each call's signature and docstring live on its
implementation (``_listing``, ``_objects``, ``_put``, ``_presign``, ``_downloads``, ``_frames``),
whose first parameter is the storage. :class:`~mpr_storage.Storage` binds the implementations
as its methods; the helpers here derive the two other forms of each call from them:

- :func:`on_default`: the module-level function of :mod:`mpr_storage`, the same call on the
  running loop's default storage (:func:`iterator_on_default`, :func:`context_on_default` for
  the calls that return an async iterator or an async context manager at once);
- :func:`blocking`: the twin in :mod:`mpr_storage.sync`, the same call run on the portal's loop
  thread.

Both keep the implementation's name, docstring and signature (without the storage parameter),
so ``help()``, ``inspect.signature`` and mypy see the real parameters.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = [
    "Portal",
    "blocking",
    "blocking_doc",
    "context_on_default",
    "documented",
    "iterator_on_default",
    "on_default",
    "public_signature",
]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])

ASYNC_MODULE = "mpr_storage"
SYNC_MODULE = "mpr_storage.sync"


class Portal(Protocol):
    """What runs a coroutine function to completion from a thread without an event loop."""

    def call(
        self, func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...


def signature(func: Callable[..., Any]) -> inspect.Signature:
    """``func``'s signature with its annotations evaluated where they can be (readable
    ``help()``), as strings otherwise."""
    try:
        return inspect.signature(func, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        return inspect.signature(func)


def public_signature(impl: Callable[..., Any]) -> inspect.Signature:
    """The signature of an implementation without its first (storage) parameter."""
    sig = signature(impl)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def blocking_doc(func: Callable[..., Any]) -> str:
    """The docstring of ``func``'s blocking twin: a line saying it is the blocking form, then
    ``func``'s text."""
    note = f"Blocking form of :func:`{ASYNC_MODULE}.{func.__name__}`."
    return f"{note}\n\n{inspect.cleandoc(func.__doc__ or '')}".rstrip()


def _present(
    wrapper: Callable[P, T], like: Callable[..., Any], sig: inspect.Signature, module: str, doc: str
) -> Callable[P, T]:
    functools.update_wrapper(wrapper, like)
    target: Any = wrapper  # a function takes these attributes; its static type does not say so
    target.__signature__ = sig
    target.__module__ = module
    target.__qualname__ = like.__name__  # a function of its module, even when ``like`` is a method
    target.__doc__ = doc
    return wrapper


def on_default(
    impl: Callable[Concatenate[S, P], Awaitable[T]], storage: Callable[[], Awaitable[S]]
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The module-level form of ``impl``: the same call on ``await storage()`` (the running
    loop's default storage)."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return await impl(await storage(), *args, **kwargs)

    return _present(call, impl, public_signature(impl), ASYNC_MODULE, impl.__doc__ or "")


def iterator_on_default(
    impl: Callable[Concatenate[S, P], AsyncIterator[T]], storage: Callable[[], Awaitable[S]]
) -> Callable[P, AsyncIterator[T]]:
    """The module-level form of ``impl``, which returns an async iterator: returned at once (not
    a coroutine function), the default storage found on the first ``__anext__``."""

    def call(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        async def run() -> AsyncIterator[T]:
            async for item in impl(await storage(), *args, **kwargs):
                yield item

        return run()

    return _present(call, impl, public_signature(impl), ASYNC_MODULE, impl.__doc__ or "")


def context_on_default(
    impl: Callable[Concatenate[S, P], AbstractAsyncContextManager[T]],
    storage: Callable[[], Awaitable[S]],
) -> Callable[P, AbstractAsyncContextManager[T]]:
    """The module-level form of ``impl``, which returns an async context manager: returned at
    once (not a coroutine function), the default storage found on entry."""

    def call(*args: P.args, **kwargs: P.kwargs) -> AbstractAsyncContextManager[T]:
        @contextlib.asynccontextmanager
        async def run() -> AsyncIterator[T]:
            async with impl(await storage(), *args, **kwargs) as value:
                yield value

        return run()

    return _present(call, impl, public_signature(impl), ASYNC_MODULE, impl.__doc__ or "")


def blocking(func: Callable[P, Coroutine[Any, Any, T]], portal: Portal) -> Callable[P, T]:
    """The blocking twin of the module-level coroutine function ``func``, run by ``portal``."""

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return portal.call(func, *args, **kwargs)

    return _present(call, func, signature(func), SYNC_MODULE, blocking_doc(func))


def documented(like: Callable[..., Any], *, sync: bool = False) -> Callable[[F], F]:
    """Give a hand-written form (one whose shape differs, e.g. an iterator) the docstring of
    the implementation ``like``; ``sync``: as its blocking twin in :mod:`mpr_storage.sync`."""

    def decorate(func: F) -> F:
        target: Any = func
        target.__signature__ = signature(func)  # evaluated annotations: a readable help()
        target.__doc__ = blocking_doc(like) if sync else like.__doc__
        return func

    return decorate
