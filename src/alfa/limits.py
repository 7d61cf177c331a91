"""The one rule every reader of a file follows: no size read from a file is trusted unchecked.

A file can claim anything about itself: a zip member's uncompressed size, an ``.npy`` header's
shape, a TFRecord's record length, a pickle's ``bytearray(2**40)``, a JSON document nested a
hundred thousand levels deep. Before a reader allocates what a file asks for, it checks the
claim against the file's real size and against the caps below, and refuses the file with one
line naming it (the error class the caller passes, a :class:`~alfa.errors.DataError` by
default). Memory is bounded by the caps and by what the file really holds, never by what it
says it holds.

The caps, in one place:

* :data:`MAX_TEXT_BYTES` (64 MiB): a file read whole as text or JSON (configs, split lists,
  ``dataset_spec.json``, CUB split files, an export's header, a ``metrics.jsonl``).
* :data:`MAX_DEPTH` (100): the nesting of a JSON or YAML document.
* :data:`MAX_ITEM_BYTES` (256 MiB): one stored item decoded whole: an image file, a zip member,
  a TFRecord record.
* :data:`MAX_RATIO` (100): how much larger than its compressed bytes a zip member may be.
* :data:`MAX_FILE_BYTES` (4 GiB): a checkpoint or an export, read whole to verify its checksum.

Decompressed and decoded sizes are also checked against :func:`available_memory` (the smallest
of the address-space limit, the cgroup's memory limit and the machine's available memory).
"""

from __future__ import annotations

import io
import json
import lzma
import os
import re
import resource
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from alfa.errors import AlfaError, DataError

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_ITEM_BYTES",
    "MAX_RATIO",
    "MAX_TEXT_BYTES",
    "MIN_ADDRESS_SPACE",
    "available_memory",
    "check_address_space",
    "check_allocation",
    "check_depth",
    "check_nesting",
    "format_bytes",
    "load_json",
    "open_member",
    "read_bytes",
    "read_member",
    "read_text",
]

MAX_TEXT_BYTES = 64 * 2**20
"""The largest file read whole as text or JSON (64 MiB; the largest such file of a supported
data set, ILSVRC-2012's ``dataset_spec.json``, is a few megabytes)."""

MAX_DEPTH = 100
"""The deepest nesting of lists and objects in a JSON or YAML document (a config nests 3 deep,
a ``dataset_spec.json`` 4)."""

MAX_ITEM_BYTES = 256 * 2**20
"""The largest stored item decoded whole: an image file, a zip member or a TFRecord record
(256 MiB; an uncompressed 67-megapixel RGB image is 192 MiB)."""

MAX_RATIO = 100
"""The largest ratio of a zip member's uncompressed size to its compressed size (images barely
compress; a zip bomb expands a thousandfold)."""

MAX_IMAGE_SIDE = 8192
"""The largest side of the square images a model is fed (``data.image_size``, an export's
preprocessing): 8192 x 8192 is the 67 million pixels of
:data:`alfa.data.images.MAX_IMAGE_PIXELS`."""

MAX_FILE_BYTES = 4 * 2**30
"""The largest checkpoint or export, read whole to verify its SHA-256 (4 GiB; a ResNet-12
checkpoint with its optimiser state is about 200 MB)."""

MIN_ADDRESS_SPACE = 1 * 2**30
"""The smallest address-space limit (``ulimit -v``) under which alfa starts: loading PyTorch
and NumPy's BLAS maps about 0.7 GiB."""

ErrorType = Callable[[str], AlfaError]


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: ``512 bytes``, ``1.5 MiB``, ``4.0 GiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return None


def _address_space_left() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    pages = _read_int("/proc/self/statm")  # the first field: the address space in use, in pages
    used = pages * int(os.sysconf("SC_PAGE_SIZE")) if pages is not None else 0
    return max(0, soft - used)


def _cgroup_left() -> int | None:
    limit = _read_int("/sys/fs/cgroup/memory.max")  # "max" (no limit) reads as None
    if limit is None:
        limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v1
        if limit is not None and limit >= 2**60:
            limit = None
        used = _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    else:
        used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is None:
        return None
    return max(0, limit - (used or 0))


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of what its address-space limit
    (``ulimit -v``), its cgroup's memory limit and the machine's available memory leave, or
    None where none of them can be read."""
    found = [
        m for m in (_address_space_left(), _cgroup_left(), _meminfo_available()) if m is not None
    ]
    return min(found) if found else None


def check_address_space() -> None:
    """Refuse to start under an address-space limit too small to load PyTorch (a library that
    cannot map itself fails with a traceback, or BLAS aborts the process).

    Raises:
        AlfaError: naming the limit and :data:`MIN_ADDRESS_SPACE`.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
        raise AlfaError(
            f"the address-space limit (ulimit -v) is {format_bytes(soft)}; alfa needs at least "
            f"{format_bytes(MIN_ADDRESS_SPACE)} to load PyTorch (raise it with ulimit -v)"
        )


def check_allocation(nbytes: int, what: str, *, error: ErrorType = DataError) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` when they exceed :func:`available_memory`.

    Raises:
        AlfaError: of class ``error``, naming ``what``, the size and the memory left.
    """
    left = available_memory()
    if left is not None and nbytes > left:
        raise error(
            f"{what} needs {format_bytes(nbytes)} of memory, more than the "
            f"{format_bytes(left)} available"
        )


_CHECKED_ABOVE = 64 * 2**20  # smaller files are read without asking how much memory is left


def read_bytes(
    path: str | os.PathLike[str],
    *,
    cap: int,
    what: str,
    error: ErrorType = DataError,
) -> bytes:
    """Every byte of ``path``, refusing a file larger than ``cap`` before reading it.

    The size is taken from the file system and, for what has none (a pipe, a device such as
    ``/dev/zero``), bounded while reading: at most ``cap + 1`` bytes are ever read. A file over
    64 MiB must also fit :func:`available_memory`.

    Raises:
        AlfaError: of class ``error``, naming ``what`` and the file: it cannot be read, or it
            is larger than ``cap``.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                raise error(_too_big(what, path, size, cap))
            if size > _CHECKED_ABOVE:
                check_allocation(size, f"reading {what} '{path}'", error=error)
            data = _read_at_most(fh, cap + 1, size)
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {exc.strerror or exc}") from exc
    if len(data) > cap:
        raise error(_too_big(what, path, None, cap))
    return data


def _read_at_most(fh: BinaryIO, limit: int, size: int) -> bytes:
    """At most ``limit`` bytes of ``fh``; never asks for more than the file's size (+1) at once,
    since a read of ``n`` bytes reserves ``n`` bytes first."""
    first = fh.read(min(size + 1, limit) if size else min(2**16, limit))
    if len(first) >= limit or (size and len(first) <= size and not fh.peek(1)[:1]):
        return first
    parts, held = [first], len(first)
    while held < limit:  # a pipe, a device, or a file that grew while it was read
        chunk = fh.read(min(2**20, limit - held))
        if not chunk:
            break
        parts.append(chunk)
        held += len(chunk)
    return b"".join(parts)


def _too_big(what: str, path: str | os.PathLike[str], size: int | None, cap: int) -> str:
    held = f" ({format_bytes(size)})" if size is not None else ""
    return (
        f"{what} '{path}' is larger{held} than the {format_bytes(cap)} alfa reads for one; "
        "is it the right file?"
    )


def read_text(
    path: str | os.PathLike[str],
    *,
    what: str,
    cap: int = MAX_TEXT_BYTES,
    error: ErrorType = DataError,
) -> str:
    """The UTF-8 text of ``path`` (at most ``cap`` bytes, see :func:`read_bytes`).

    Raises:
        AlfaError: of class ``error``: the file cannot be read, is too large or is not UTF-8.
    """
    data = read_bytes(path, cap=cap, what=what, error=error)
    if b"\0" in data:
        raise error(f"{what} '{path}' is not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} '{path}' is not a text (UTF-8) file") from exc


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def check_depth(text: str | bytes, where: str, *, error: ErrorType = DataError) -> None:
    """Refuse a JSON (or flow-style YAML) document nested deeper than :data:`MAX_DEPTH`.

    Brackets inside strings are not counted. Parsers recurse once per level, so a document of
    a hundred thousand ``[`` would otherwise end in a ``RecursionError``.

    Raises:
        AlfaError: of class ``error``, naming ``where``.
    """
    data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return
    depth = deepest = 0
    for match in re.finditer(rb"[\[\]{}]", _STRING.sub(b'""', data)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                raise error(f"{where} is nested more than {MAX_DEPTH} levels deep; refused")


def check_nesting(obj: Any, where: str, *, error: ErrorType = DataError) -> None:
    """Refuse plain data (dicts, lists, tuples) nested deeper than :data:`MAX_DEPTH`; walked
    without recursion, so a structure that an unpickler built iteratively cannot overflow the
    stack here or later.

    Raises:
        AlfaError: of class ``error``, naming ``where``.
    """
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{where} is nested more than {MAX_DEPTH} levels deep; refused")
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((value, depth + 1) for value in item)


def load_json(text: str | bytes, where: str, *, error: ErrorType = DataError) -> Any:
    """Parse JSON ``text`` after :func:`check_depth`.

    Raises:
        AlfaError: of class ``error``, naming ``where``: too deep, or not valid JSON.
    """
    if not isinstance(text, str | bytes | bytearray):
        raise error(f"{where} is not JSON text but {type(text).__name__}")
    check_depth(text, where, error=error)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{where} is not valid JSON: {first}") from None


_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,  # an encrypted member
    NotImplementedError,  # an unknown compression method
)


def open_member(
    archive: zipfile.ZipFile, name: str | zipfile.ZipInfo, where: str, *, error: ErrorType
) -> tuple[zipfile.ZipInfo, BinaryIO]:
    """A checked read stream of one zip member: its declared size within :data:`MAX_RATIO`
    times its compressed size, and a stream that stops at the declared size (``zipfile``
    checks the CRC at its end).

    Raises:
        AlfaError: of class ``error``: no such member, encrypted, an unknown compression
            method, or a size that no real member has.
    """
    try:
        info = name if isinstance(name, zipfile.ZipInfo) else archive.getinfo(name)
    except KeyError:
        raise error(f"{where}: no such member in the zip archive") from None
    if info.flag_bits & 0x1:
        raise error(f"{where} is encrypted; alfa reads only unencrypted zip archives")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_RATIO * max(
        info.compress_size, 1
    ):
        raise error(
            f"{where} claims to expand {format_bytes(info.compress_size)} into "
            f"{format_bytes(info.file_size)}, over {MAX_RATIO} times: a zip bomb or a damaged "
            "archive; refused"
        )
    try:
        stream = archive.open(info)
    except _ZIP_ERRORS as exc:
        raise error(f"{where} cannot be read: {_zip_problem(exc)}") from None
    return info, stream  # type: ignore[return-value]


def _zip_problem(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return f"{exc} (re-create the archive with deflate compression)"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{text} (the archive is damaged: download or create it again)"


def read_member(
    archive: zipfile.ZipFile,
    name: str | zipfile.ZipInfo,
    where: str,
    *,
    cap: int = MAX_ITEM_BYTES,
    error: ErrorType = DataError,
) -> bytes:
    """The bytes of one zip member, streamed: refused from its declared sizes when it is over
    ``cap`` or expands over :data:`MAX_RATIO` times, never decompressed past its declared size.

    Raises:
        AlfaError: of class ``error``, naming ``where``: see :func:`open_member`, or a corrupt
            compressed stream or CRC.
    """
    info, stream = open_member(archive, name, where, error=error)
    if info.file_size > cap:
        stream.close()
        raise error(
            f"{where} is {format_bytes(info.file_size)}, more than the {format_bytes(cap)} "
            "alfa reads for one item; refused"
        )
    out = io.BytesIO()
    try:
        with stream:
            while chunk := stream.read(2**20):
                out.write(chunk)
                if out.tell() > info.file_size:  # pragma: no cover - zipfile stops there
                    raise error(f"{where} holds more than its declared size; refused")
    except _ZIP_ERRORS as exc:
        raise error(f"{where} cannot be read: {_zip_problem(exc)}") from None
    return out.getvalue()
