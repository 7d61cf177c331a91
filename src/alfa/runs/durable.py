"""Writing to a disk that may fill up: every byte or a clear error, never half a record.

``os.write`` may write fewer bytes than asked (a disk with little room left does so before it
reports ``ENOSPC``), so :func:`write_all` loops until every byte is written or the system
refuses. :func:`append_record` adds one line to a log and, when the disk refuses it, cuts the
file back to where it was, so the log never ends with a torn record that a later append would
bury in the middle of the file.
"""

from __future__ import annotations

import contextlib
import errno
import os

__all__ = ["append_record", "is_disk_full", "write_all"]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""No space left on the device, the user's quota exceeded, or the file-size limit reached."""


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to the file descriptor ``fd``.

    Raises:
        OSError: the system refused a write (e.g. ``ENOSPC``); part of ``data`` may be written.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - a regular file never accepts nothing silently
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (a write accepted no bytes)")
        view = view[written:]


def append_record(fd: int, line: bytes) -> None:
    """Append ``line`` (one whole record) to the file open for appending as ``fd``.

    Raises:
        OSError: the record could not be written; the file is cut back to its previous end, so
            it holds whole records only.
    """
    end = os.fstat(fd).st_size
    try:
        write_all(fd, line)
    except OSError:
        with contextlib.suppress(OSError):  # cutting a file back frees space, it needs none
            os.ftruncate(fd, end)
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says that the disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        seen = seen.__cause__
    return False
