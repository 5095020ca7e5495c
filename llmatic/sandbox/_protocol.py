"""Small pieces shared by the parent, the zygote and the child: framing, names, the environment.

Channels of one call (the parent creates them, hands the child's ends to the zygote):

* control (parent <-> zygote, ``SOCK_SEQPACKET``, one per zygote): each message is one
  byte plus two to ``2 + MAX_FILES`` file descriptors: the result pipe's write end, the
  zygote's end of the status socket, then the call's attached files
  (``Sandbox.run(files=...)``), in the order of the request's ``"files"`` names. The
  zygote answers ``ready`` or ``error`` on it once at start-up.
* status socket (parent <-> zygote, per call): the parent sends the request as one
  length-prefixed JSON object; the zygote answers newline-separated JSON objects,
  ``{"pid": ...}`` after the fork and ``{"exit": {...}}`` after reaping the child.
  The child closes its copy before running anything, so the status is trusted.
* result pipe (child -> parent, per call): the child's JSON envelope. Untrusted: the
  parent reads at most the cap and parses it with :func:`json.loads`, never unpickles.
* attached files (per call, optional): regular files the parent opened itself, read-only
  or write-only; the child reads or writes them through the descriptors and never learns
  more of the filesystem. What a child wrote is untrusted, like its envelope.
"""

from __future__ import annotations

import os
import re
import socket
import struct

#: Environment variables the zygote (and so every child) inherits; everything else is
#: dropped, so that API keys in the search process never reach the untrusted code.
ENV_ALLOWED: frozenset[str] = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
    }
)
#: Prefixes of allowed variables: locale and the thread pools of the numeric libraries.
ENV_ALLOWED_PREFIXES: tuple[str, ...] = (
    "LC_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "GOMP_",
    "PYTORCH_",
)
#: A variable whose name contains one of these is dropped even if allowed above.
ENV_SECRET_MARKERS: tuple[str, ...] = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
)

_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
#: What the name of an attached file looks like.
FILE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
#: Most files one call may have attached.
MAX_FILES = 4
_LENGTH = struct.Struct("!Q")
#: One-line messages are cut to this many characters.
MESSAGE_CHARS = 300


def scrub_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The allow-listed part of ``environ``, without anything that looks like a secret."""
    kept = {}
    for name, value in environ.items():
        upper = name.upper()
        if any(marker in upper for marker in ENV_SECRET_MARKERS):
            continue
        if upper in ENV_ALLOWED or upper.startswith(ENV_ALLOWED_PREFIXES):
            kept[name] = value
    return kept


def parse_target(target: str) -> tuple[str, str]:
    """Splits ``"package.module:function"`` into module and function names.

    Raises:
        ValueError: ``target`` is not of that form.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    module, function = target.split(":")
    return module, function


def check_file_name(name: object) -> str:
    """``name``, if it can name an attached file (:data:`FILE_NAME`).

    Raises:
        ValueError: It cannot.
    """
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
        raise ValueError(f"an attached file's name must match {FILE_NAME.pattern!r}, got {name!r}")
    return name


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def send_frame(sock: socket.socket, data: bytes) -> None:
    """Sends ``data`` with a length prefix over a stream socket."""
    sock.sendall(_LENGTH.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> bytes:
    """Receives one frame sent by :func:`send_frame` (only ever from the trusted parent).

    Raises:
        ConnectionError: The peer closed the socket mid-frame.
    """
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    return _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed the socket mid-frame")
        chunks += chunk
    return bytes(chunks)
