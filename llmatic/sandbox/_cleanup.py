"""Removing a call's working directory, whatever tree the call left in it.

``shutil.rmtree`` recurses (a deep enough tree raises ``RecursionError``), walks paths
(past ``PATH_MAX`` they fail) and gives up on directories it may not read. A call can
make all of those, and the zygote, which cleans up after every call, must not die of it.
:func:`remove_tree` keeps two directory descriptors open at any time: it deletes the
files of each directory and lifts its subdirectories' entries up to the top, so depth
costs nothing, and it never raises.
"""

from __future__ import annotations

import contextlib
import os
import secrets

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str) -> bool:
    """Removes ``path`` and everything beneath it; whether it is gone. Never raises."""
    try:
        top = os.open(path, _DIRECTORY)
    except FileNotFoundError:
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return not os.path.lexists(path)
    try:
        _empty(top)
    except Exception:  # noqa: BLE001 - whatever it is, the zygote goes on
        pass
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    return not os.path.lexists(path)


def _empty(top: int) -> None:
    """Deletes the entries of the directory ``top``, pass after pass, until none is left."""
    prefix = f".llmatic-rm-{secrets.token_hex(8)}-"
    serial = 0
    with contextlib.suppress(OSError):
        os.fchmod(top, 0o700)
    while True:
        with os.scandir(top) as entries:
            names = [(entry.name, _is_dir(entry)) for entry in entries]
        if not names:
            return
        progress = False
        for name, is_dir in names:
            try:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    progress = True
                    continue
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
                    progress = True
                    continue
                inner = os.open(name, _DIRECTORY, dir_fd=top)
                try:
                    with contextlib.suppress(OSError):
                        os.fchmod(inner, 0o700)
                    with os.scandir(inner) as children:
                        for child in children:
                            os.rename(
                                child.name, f"{prefix}{serial}", src_dir_fd=inner, dst_dir_fd=top
                            )
                            serial += 1
                            progress = True
                finally:
                    os.close(inner)
            except OSError:
                continue
        if not progress:
            return


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
