"""One bounded retry policy for every remote call: REST encoders, the litellm caption writer, the VLM.

    remote.call(send, what="cohere-embed-v4")   # send(timeout) -> answer; raises Transient to be retried

A call is tried at most 1 + SLIME_REMOTE_RETRIES times (tenacity), with exponential backoff that honours a
server's Retry-After; each try gets at most SLIME_REMOTE_TIMEOUT seconds. On top of that, every remote call
of one command shares one deadline (SLIME_REMOTE_DEADLINE seconds from its first remote call, `command_scope`);
once it passes, the call stops with one SlimeError that says so. Outside a command scope (a library call,
the app) each call gets the whole deadline for itself, retries included.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from slime_core.infra import settings
from slime_core.infra.errors import SlimeError, mask_secrets

log = logging.getLogger(__name__)
T = TypeVar("T")


# The limits on remote calls, from the environment (read through settings) and checked here, where they are used.
def default_deadline() -> float:
    """Seconds one command may spend on remote calls in all (SLIME_REMOTE_DEADLINE, default 300)."""
    return _seconds("SLIME_REMOTE_DEADLINE", 300.0)


def default_timeout() -> float:
    """Seconds one remote call may take (SLIME_REMOTE_TIMEOUT, default 30)."""
    return _seconds("SLIME_REMOTE_TIMEOUT", 30.0)


def default_retries() -> int:
    """Tries after a failed remote call (SLIME_REMOTE_RETRIES, default 3)."""
    return int(_seconds("SLIME_REMOTE_RETRIES", 3))


def _seconds(name: str, default: float) -> float:
    value = settings.env(name)
    if value is None:
        return default
    try:
        out = float(value)
    except ValueError:
        out = -1.0
    if not out >= 0:
        raise SlimeError(f"${name} must be a number of seconds/tries >= 0, not {value!r}.")
    return out


class Transient(Exception):
    """A failure worth retrying (429, 5xx, timeout, refused connection). `retry_after`: the server's wish, s."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


class DeadlinePassed(SlimeError):
    """The command's remote deadline passed."""


_lock = threading.Lock()
_scope: dict | None = None  # {"seconds": float, "end": float | None} while a command runs


@contextmanager
def command_scope(seconds: float | None = None):
    """Every remote call inside shares one deadline, counted from the first remote call (the CLI wraps each
    command in one). seconds: default SLIME_REMOTE_DEADLINE; 0 = no deadline."""
    global _scope
    with _lock:
        previous = _scope
        _scope = {"seconds": default_deadline() if seconds is None else float(seconds), "end": None}
    try:
        yield
    finally:
        with _lock:
            _scope = previous


def _deadline() -> tuple[float, float | None]:
    """(deadline seconds, monotonic end time or None for none) for a call starting now."""
    with _lock:
        if _scope is not None:
            if _scope["seconds"] and _scope["end"] is None:
                _scope["end"] = time.monotonic() + _scope["seconds"]
            return _scope["seconds"], _scope["end"]
    seconds = default_deadline()
    return seconds, (time.monotonic() + seconds if seconds else None)


def call(send: Callable[[float], T], what: str, retries: int | None = None, timeout: float | None = None,
         backoff: float = 1.0, max_wait: float = 60.0,
         give_up: Callable[[int, str], str] | None = None) -> T:
    """`send(timeout)` under the retry policy. `send` raises `Transient` for a failure worth retrying and
    SlimeError (or anything else) for one that is not; those pass through at once."""
    retries = default_retries() if retries is None else int(retries)
    timeout = default_timeout() if timeout is None else float(timeout)
    seconds, end = _deadline()

    def remaining() -> float:
        return float("inf") if end is None else end - time.monotonic()

    def passed(problem: str) -> DeadlinePassed:
        return DeadlinePassed(mask_secrets(
            f"{what}: no usable answer within the {seconds:g} s remote deadline "
            f"(SLIME_REMOTE_DEADLINE); last problem: {problem}. Check the network and the service, or raise "
            f"the deadline."))

    def wait(state: RetryCallState) -> float:
        err = state.outcome.exception()
        pause = min(backoff * 2 ** (state.attempt_number - 1), max_wait)
        if isinstance(err, Transient) and err.retry_after is not None:
            pause = min(err.retry_after, max_wait)
        return max(0.0, min(pause, remaining()))

    def out_of_time(state: RetryCallState) -> bool:
        return remaining() <= 0.05

    def attempt() -> T:
        left = remaining()
        if left <= 0.05:
            raise passed("no time left for another try")
        return send(min(timeout, left))

    def log_retry(state: RetryCallState) -> None:
        err = state.outcome.exception()
        log.info("%s: try %d failed (%s); retrying", what, state.attempt_number, mask_secrets(err))

    retrying = Retrying(stop=stop_after_attempt(retries + 1) | out_of_time, wait=wait,
                        retry=retry_if_exception_type(Transient), before_sleep=log_retry, reraise=True)
    tries = 0
    try:
        for try_ in retrying:
            with try_:
                tries += 1
                return attempt()
    except Transient as err:
        if remaining() <= 0.05 and tries < retries + 1:
            raise passed(err.problem) from None
        message = give_up(tries, err.problem) if give_up else \
            f"{what}: giving up after {tries} tries; last problem: {err.problem}."
        raise SlimeError(mask_secrets(message)) from None
    raise AssertionError("unreachable")  # pragma: no cover
