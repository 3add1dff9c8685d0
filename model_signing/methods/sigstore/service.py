"""A helper process that runs the Sigstore client while this process hashes the model.

Keyless signing and verification spend most of their fixed cost outside hashing: importing sigstore
(about a third of a second of CPU) and its network round trips (TUF refresh, Fulcio certificate). Both
can happen while the model is hashed, but not in a thread of this process: the hashing workers are
forked, and forking while another thread is inside an import or OpenSSL can deadlock the child.  So
the Sigstore work runs in its own interpreter, started (not forked) from this one:

- ``python -P -c``: no current directory on ``sys.path``, since a model directory may hold ``.py``
  files that would otherwise shadow modules sigstore imports;
- requests and replies are length-prefixed pickles on two pipes, tagged with an id, so any number of
  signers, verifiers and threads share one helper;
- the helper exits when its request pipe closes (this process exiting closes it), so it never
  outlives its parent; it ignores Ctrl-C, which the parent handles;
- every request carries a timeout: in the helper it bounds each network operation of the Sigstore
  clients (``_sigstore_ops.install_deadlines``), and here it bounds how long we wait without hearing from
  the helper (:func:`reply_bound`), so neither a silent service nor a stuck helper hangs the caller.

The CLI starts the helper before it even imports its own modules (:func:`prestart`), which hides
sigstore's import behind the CLI's start-up and the hashing.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import model_signing
from model_signing.errors import ModelSigningError
from model_signing.methods.sigstore._wire import (
    DEFAULT_TIMEOUT,
    reply_bound,
    service_at,
)

if TYPE_CHECKING:
    pass

T = TypeVar("T")

# The directory holding the ``model_signing`` package (found from the package itself, wherever this module
# sits in it), so the helper imports this very copy.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(model_signing.__file__)))
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from model_signing.methods.sigstore.service import serve; serve()"

class HelperError(ModelSigningError):
    """The Sigstore helper process failed (it could not start, or it died)."""


class Pending(Generic[T]):
    """The reply to one request, collected when needed; the helper keeps working meanwhile."""

    def __init__(
        self, service: Service, request_id: int, convert: Callable[[Any], T], timeout: float, what: str
    ) -> None:
        self._service = service
        self._id = request_id
        self._convert = convert
        self._timeout = timeout
        self._what = what
        self._reply: tuple[bool, Any] | None = None

    def _take(self, block: bool) -> tuple[bool, Any] | None:
        if self._reply is None:
            self._reply = self._service._reply(self._id, block, self._timeout, self._what)
        return self._reply

    def raise_if_failed(self) -> None:
        """Raise the request's error if it has already failed; return at once otherwise."""
        reply = self._take(block=False)
        if reply is not None and not reply[0]:
            raise reply[1]

    def result(self) -> T:
        """Wait for the reply: the value, or the request's error raised here."""
        reply = self._take(block=True)
        assert reply is not None
        ok, value = reply
        if not ok:
            raise value
        return self._convert(value)


class Service:
    """One helper process and its two pipes."""

    def __init__(self, *, fork: bool = False) -> None:
        """Start the helper: a new interpreter, or with ``fork`` (the CLI, at its start) a fork if
        :func:`_may_fork` allows it."""
        task_r, self._task_w = os.pipe()
        self._result_r, result_w = os.pipe()
        # The helper starts with SIGINT blocked (the mask survives exec) until serve() ignores it: a Ctrl-C
        # during its start-up would otherwise kill it, or print a KeyboardInterrupt traceback.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._proc: subprocess.Popen[bytes] | _Forked
            if fork and _may_fork():
                self._proc = _Forked.start(task_r, result_w, (self._task_w, self._result_r))
            else:
                self._proc = subprocess.Popen(
                    [sys.executable, "-P", "-c", _BOOT, _PACKAGE_PARENT, str(task_r), str(result_w)],
                    pass_fds=(task_r, result_w),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,  # the protocol has its own pipes; sigstore's warnings go to stderr
                )
        except OSError as exc:
            for fd in (self._task_w, self._result_r):
                os.close(fd)
            raise HelperError(f"cannot start the Sigstore helper process ({exc.strerror or exc})") from None
        finally:
            os.close(task_r)
            os.close(result_w)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._pid = os.getpid()  # a forked copy of this object must not use (or wait for) our helper
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._replies: dict[int, tuple[bool, Any]] = {}
        # The URL each request is contacting (the helper reports it), and when the helper was last heard.
        self._contacting: dict[int, str] = {}
        self._last_heard = time.monotonic()
        # Requests sent and replies read, each counted under its own lock: the difference is work still owed.
        self._sent = self._received = 0
        self._closed = False

    def submit(
        self,
        operation: str,
        *args: object,
        convert: Callable[[Any], T] = lambda v: v,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "",
    ) -> Pending[T]:
        """Ask the helper to run ``operation(*args)`` (see ``_sigstore_ops.OPERATIONS``).

        ``timeout`` bounds each network operation of the request (see :func:`reply_bound`); ``what``
        describes the request for the message if the helper stops answering ("getting the certificate").
        """
        from model_signing._internal.framing import send as _send

        with self._send_lock:
            request_id = next(self._ids)
            try:
                _send(self._task_w, (request_id, operation, args, timeout))
            except OSError:
                raise self._died() from None
            self._sent += 1
        return Pending(self, request_id, convert, timeout, what or operation)

    def _reply(self, request_id: int, block: bool, timeout: float, what: str) -> tuple[bool, Any] | None:
        from model_signing._internal.framing import recv as _recv

        bound = reply_bound(timeout)
        with self._recv_lock:
            # Silence is counted from when this wait began or the helper was last heard, whichever is later.
            start = time.monotonic()
            while request_id not in self._replies:
                if not block:
                    if not _readable(self._result_r):
                        return None
                else:
                    left = bound - (time.monotonic() - max(start, self._last_heard))
                    if left <= 0 or not _readable(self._result_r, left):
                        if time.monotonic() - max(start, self._last_heard) >= bound:
                            raise self._stuck(request_id, bound, what)
                        continue
                message = _recv(self._result_r)
                if message is None:
                    raise self._died()
                self._last_heard = time.monotonic()
                rid, ok, value = message
                if ok is None:  # not a reply: the helper is about to contact the URL ``value``
                    self._contacting[rid] = value
                    continue
                self._contacting.pop(rid, None)
                self._replies[rid] = (ok, value)
                self._received += 1
            return self._replies.pop(request_id)

    def _stuck(self, request_id: int, bound: float, what: str) -> HelperError:
        # The helper bounds each connect and read, so this means a service that answers too slowly to ever
        # finish (or a helper wedged some other way): stop it, so the caller can report and exit.
        url = self._contacting.get(request_id)
        self.close()
        where = f"{service_at(url)} at {url}" if url else "the Sigstore helper process"
        return HelperError(
            f"no answer from {where} within {bound:g} s while {what}; gave up. Check that the service is up "
            "and answers promptly, or allow a longer timeout"
        )

    def _died(self) -> HelperError:
        code = self._proc.poll()
        how = f"exit code {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
        return HelperError(
            f"the Sigstore helper process stopped unexpectedly ({how}); see the messages above, and check that "
            "the sigstore package is installed"
        )

    def close(self, timeout: float = 2.0) -> None:
        """Let the helper exit (it stops at the end of its request pipe); kill it if it does not."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._task_w, self._result_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        if os.getpid() != self._pid:
            return  # a forked child's copy: the helper belongs to the parent
        if self._sent != self._received:
            # Work nobody will read (Ctrl-C, an error elsewhere): the helper would only notice the closed
            # pipe once it finishes, which can be a slow network request. Stop it now.
            self._proc.kill()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _may_fork() -> bool:
    """Whether the helper can be forked from this process instead of started as a new interpreter.

    A fork skips the helper's own interpreter start-up and its import of this package (about 70 ms on
    a keyless command's critical path: the helper's import of sigstore cannot begin before it).  Only
    from a process with no other thread (the CLI, right at its start): a fork copies whatever locks
    other threads hold at that instant (imports, logging, OpenSSL), which could deadlock the helper.
    POSIX only.  ``MODELSEAL_HELPER_SPAWN=1`` forces the new interpreter.
    """
    return (hasattr(os, "fork") and threading.active_count() == 1
            and os.environ.get("MODELSEAL_HELPER_SPAWN") != "1")


class _Forked:
    """A forked helper, handled like the :class:`subprocess.Popen` of a spawned one (pid, poll, wait, kill)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(cls, task_r: int, result_w: int, parent_ends: tuple[int, ...]) -> _Forked:
        """Fork; the child serves on ``task_r`` / ``result_w`` and never returns."""
        pid = os.fork()
        if pid:
            return cls(pid)
        try:  # the child: from here on nothing may return into the parent's code
            for fd in parent_ends:
                os.close(fd)
            _close_inherited((task_r, result_w))
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)  # as the spawned helper: the protocol has its own pipes; warnings go to stderr
            os.close(devnull)
            # What -P does for the spawned helper: nothing the user's current directory holds is importable
            # (a model directory may hold .py files that would shadow modules sigstore imports).
            try:
                here: str | None = os.getcwd()
            except OSError:  # the working directory was removed: nothing there to import anyway
                here = None
            sys.path[:] = [p for p in sys.path if p == _PACKAGE_PARENT or p not in ("", ".", here)]
            serve(task_r, result_w)
        except BaseException:  # noqa: BLE001 - said on stderr as the spawned helper's interpreter would
            import traceback

            traceback.print_exc()
            with contextlib.suppress(Exception):
                sys.stderr.flush()
        finally:
            os._exit(1)  # serve() ends with os._exit(0); anything else is a failure

    def poll(self) -> int | None:
        """The exit code if the helper has ended (negative: the signal that ended it), else ``None``."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0  # reaped elsewhere: all that is known is that it ended
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the helper to end; :class:`subprocess.TimeoutExpired` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"sigstore helper {self.pid}", timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def kill(self) -> None:
        """SIGKILL (nothing if it has already ended)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _close_inherited(keep: tuple[int, ...]) -> None:
    """In a forked helper: close every descriptor but the standard ones and ``keep`` (as a spawned
    helper would have them: a copy of a pipe's write end would hold its reader's end of file open)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _readable(fd: int, wait: float = 0.0) -> bool:
    # poll, not select: select fails for descriptors above 1023, which long-running callers can reach.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(math.ceil(wait * 1000)))


_shared: list[Service] = []  # at most one: the process-wide helper
_shared_lock = threading.Lock()


def shared(*, fork: bool = False) -> Service:
    """The process-wide helper, started on first use (or earlier by :func:`prestart`)."""
    with _shared_lock:
        if not _shared or _shared[0]._closed or _shared[0]._pid != os.getpid():
            service = Service(fork=fork)
            atexit.register(service.close)
            _shared[:] = [service]
        return _shared[0]


def prestart(*, fork: bool = False) -> None:
    """Start the helper now, so sigstore is imported while the caller does other work.

    ``fork``: the CLI's program entry point (:func:`model_signing.cli.run`) asks for it first thing, when
    its process holds no thread and no open file: the helper is then forked (see :func:`_may_fork`).
    Any other caller (``cli.main`` called in-process, the library) may hold both, and gets a new
    interpreter.
    """
    shared(fork=fork)


def serve(task_fd: int | None = None, result_fd: int | None = None) -> None:
    """The helper's main loop, on the request and reply pipes (spawned: ``argv`` is package dir, request fd,
    reply fd; forked: given)."""
    from model_signing._internal.framing import recv as _recv
    from model_signing._internal.framing import send as _send

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes our pipe
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent until now
    task_r = task_fd if task_fd is not None else int(sys.argv[2])
    result_w = result_fd if result_fd is not None else int(sys.argv[3])
    execute: Callable[[str, tuple[object, ...], float, Callable[[str], None]], object] | None = None
    failure = HelperError("internal error: the Sigstore client did not load")
    try:
        from model_signing.methods.sigstore import _ops as _sigstore_ops  # the slow part: imports sigstore

        _sigstore_ops.install_deadlines()
        execute = _sigstore_ops.run
    except Exception as exc:  # noqa: BLE001 - reported with every request instead of a traceback
        failure = HelperError(f"cannot load the Sigstore client ({type(exc).__name__}: {exc}); reinstall modelseal")
    send_lock = threading.Lock()  # sigstore's clients may make requests from threads of their own

    def send(message: tuple[int, bool | None, object]) -> None:
        with send_lock:
            _send(result_w, message)

    while (message := _recv(task_r)) is not None:
        request_id, operation, args, timeout = message

        def contacting(url: str, request_id: int = request_id) -> None:
            send((request_id, None, url))  # tells the parent which service a stall would be waiting for

        try:
            if execute is None:
                raise failure
            reply: tuple[int, bool | None, object] = (request_id, True, execute(operation, args, timeout, contacting))
        except ModelSigningError as exc:
            reply = (request_id, False, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure is still one line for the user
            reply = (request_id, False, HelperError(f"internal error in the Sigstore helper: {exc!r}"))
        try:
            send(reply)
        except (TypeError, AttributeError, pickle.PicklingError):  # a value or error that cannot be pickled
            send((request_id, False, HelperError(f"internal error in the Sigstore helper: {reply[2]!r}")))
        except BrokenPipeError:
            break
    # The parent is done with us: skip the interpreter's tear-down of sigstore's many modules (a tenth
    # of a second the parent would otherwise wait for in close()); nothing is left to flush.
    sys.stderr.flush()
    os._exit(0)
