"""Images named by URI: only the documented schemes, every read bounded in time and size, many at once.

A list of images may name files on other hosts. One host that accepts a connection and never answers once
stalled a batch for eleven minutes; a URI of any scheme fsspec knows (``github://``, ``memory://``, ``ftp://``)
was read. Here:

- only ``file``, ``s3``, ``gs``, ``http`` and ``https`` are read; ``RESIDUAL_LAB_URI_SCHEMES`` (``score
  --allow-scheme``) adds more, and any other is refused in one sentence, which becomes the row's reason;
- ``http(s)`` is read with the standard library, with a connect timeout and a read timeout (each socket
  operation) and an overall deadline; other remote schemes through fsspec under the same overall deadline;
- reads are capped at :data:`core.data.images.MAX_IMAGE_BYTES` (plus one byte, to tell a larger file);
- :func:`fetch_many` reads the URIs of a batch concurrently, so one slow host costs the batch one timeout,
  not one timeout per entry.

A read that fails or runs out of time raises ``OSError`` with the reason; the caller makes it an INVALID row.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

DOCUMENTED_SCHEMES = ("file", "s3", "gs", "http", "https")
SCHEMES_VARIABLE = "RESIDUAL_LAB_URI_SCHEMES"
CONNECT_TIMEOUT_VARIABLE, READ_TIMEOUT_VARIABLE = "RESIDUAL_LAB_CONNECT_TIMEOUT", "RESIDUAL_LAB_READ_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT = 10.0, 30.0   # seconds
CONCURRENT_READS = 16
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else ""


def allowed_schemes() -> tuple[str, ...]:
    extra = [name.strip().lower() for name in os.environ.get(SCHEMES_VARIABLE, "").split(",") if name.strip()]
    return tuple(dict.fromkeys([*DOCUMENTED_SCHEMES, *extra]))


def timeouts() -> tuple[float, float]:
    """(connect, read) in seconds, from the environment (``score --connect-timeout/--read-timeout``)."""
    def seconds(variable: str, default: float) -> float:
        try:
            value = float(os.environ.get(variable, default))
        except ValueError:
            return default
        return value if value > 0 else default

    return seconds(CONNECT_TIMEOUT_VARIABLE, DEFAULT_CONNECT_TIMEOUT), seconds(READ_TIMEOUT_VARIABLE,
                                                                              DEFAULT_READ_TIMEOUT)


def refuse_unless_allowed(uri: str) -> None:
    scheme = scheme_of(uri)
    if scheme not in allowed_schemes():
        raise OSError(f"the scheme '{scheme}' is not read (allowed: {', '.join(allowed_schemes())}; "
                      "score --allow-scheme adds one)")


def read_remote(uri: str, limit: int) -> bytes:
    """At most ``limit`` bytes of a remote ``uri`` (not ``file://``), within the time limits; ``OSError`` else."""
    refuse_unless_allowed(uri)
    connect, read = timeouts()
    deadline = connect + read
    if scheme_of(uri) in ("http", "https"):
        return _read_http(uri, limit, connect, read, deadline)
    with ThreadPoolExecutor(max_workers=1) as pool:   # fsspec has no common timeout: a deadline around it
        future = pool.submit(_read_fsspec, uri, limit)
        try:
            return future.result(timeout=deadline)
        except FutureTimeout:
            raise OSError(f"no complete answer within {deadline:g} s") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def fetch_many(uris: list[str], limit: int) -> dict[str, bytes | OSError]:
    """Each remote URI's bytes, or the ``OSError`` that says why not; read :data:`CONCURRENT_READS` at a time."""
    unique = list(dict.fromkeys(uris))
    if not unique:
        return {}

    def attempt(uri: str):
        try:
            return read_remote(uri, limit)
        except OSError as error:
            return error

    with ThreadPoolExecutor(max_workers=min(CONCURRENT_READS, len(unique))) as pool:
        return dict(zip(unique, pool.map(attempt, unique)))


def _read_http(uri: str, limit: int, connect: float, read: float, deadline: float, redirects: int = 3) -> bytes:
    import http.client
    import socket
    from urllib.parse import urljoin, urlsplit

    started = time.monotonic()
    parts = urlsplit(uri)
    kind = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=connect)
    try:
        connection.connect()
        connection.sock.settimeout(read)   # from here every read waits at most this long
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           headers={"User-Agent": "residual-lab"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location") and redirects:
            target = urljoin(uri, response.getheader("Location"))
            refuse_unless_allowed(target)
            left = deadline - (time.monotonic() - started)
            if left <= 0:
                raise OSError(f"no complete answer within {deadline:g} s")
            return _read_http(target, limit, connect, read, left, redirects - 1)
        if response.status != 200:
            raise OSError(f"the server answered {response.status} {response.reason}")
        chunks, size = [], 0
        while size < limit:
            if time.monotonic() - started > deadline:
                raise OSError(f"no complete answer within {deadline:g} s")
            # read1: one system call, so a server that trickles a byte at a time still meets the deadline check
            chunk = response.read1(min(1 << 16, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except (socket.timeout, TimeoutError):
        raise OSError(f"no answer within the time limit ({connect:g} s to connect, {read:g} s to read)") from None
    except (http.client.HTTPException, ValueError, UnicodeError) as error:
        raise OSError(f"cannot fetch it: {error}") from None
    finally:
        connection.close()


def _read_fsspec(uri: str, limit: int) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            return handle.read(limit)
    except (ImportError, ValueError) as error:
        raise OSError(f"cannot open this URI: {str(error).splitlines()[0] if str(error) else error}") from None
