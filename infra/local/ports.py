"""The local TCP ports the stack and the demo need: are they free, and if not, who holds them.

A part that cannot bind its port must stop everything before anything starts: otherwise the other parts
talk to whatever answers there (another checkout's Firestore emulator, any program) and the failure shows
minutes later and elsewhere. Each port is named by its part and moved with ``VIGINT_PORT_<PART>``.

The holder of a port is found as ``ss -ltnp`` finds it, from Linux's ``/proc``: the listening socket's inode in
``/proc/net/tcp`` / ``tcp6``, then the process with that inode among its ``/proc/<pid>/fd`` links (another
user's processes are only visible to root).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column (include/net/tcp_states.h)


class PortsTaken(RuntimeError):
    """Ports the stack or the demo needs are in use, or given twice; the message names each one, its holder
    when it can be found and the variable that moves it."""


def port_variable(part: str) -> str:
    """``VIGINT_PORT_<PART>``, the variable that moves ``part``'s port (``edge_api`` -> ``VIGINT_PORT_EDGE_API``)."""
    return f"VIGINT_PORT_{part.upper()}"


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now. ``SO_REUSEADDR`` as servers set it, so that a
    port whose last connections are only in TIME_WAIT counts as free (Linux still refuses a port on which a
    socket listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _socket_inodes(port: int) -> set[str]:
    """Inodes of the sockets bound to local ``port`` (listening ones, or any if none listens)."""
    listening, bound = set(), set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or int(fields[1].rsplit(":", 1)[1], 16) != port or fields[9] == "0":
                continue
            (listening if fields[3] == _LISTEN else bound).add(fields[9])
    return listening or bound


def holders(port: int) -> list[tuple[int, str]]:
    """``[(pid, command line)]`` of the processes holding a socket on local TCP ``port``, pid order; empty
    when none can be seen (not on Linux, or another user's process seen without root)."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(port)}
    found: list[tuple[int, str]] = []
    if not wanted:
        return found
    for proc in _PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    found.append((int(proc.name), cmd or f"[{proc.name}]"))
                    break
            except OSError:
                continue
    return sorted(found)


def describe(part: str, port: int) -> str:
    """One line: the port, its part, who holds it (if known) and the variable that moves it."""
    who = holders(port)
    if who:
        by = "; ".join(f"pid {pid} ({cmd if len(cmd) <= 160 else cmd[:157] + '...'})" for pid, cmd in who)
    else:
        by = "a process this user cannot see"
    return (f"port {port} ({part}) is already in use by {by}; stop it, or move {part} to a free port with "
            f"{port_variable(part)}=PORT")


def check_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raises ``PortsTaken`` unless every ``part -> port`` is distinct and free on ``host`` (0: any port, not
    checked).

    Raises:
        PortsTaken: one line per problem (see ``describe``).
    """
    problems, owner = [], {}
    for part, port in ports.items():
        if port == 0:  # any free port, chosen when it binds
            continue
        if port in owner:
            problems.append(f"port {port} is given to both {owner[port]} and {part} "
                            f"({port_variable(owner[port])}, {port_variable(part)})")
            continue
        owner[port] = part
        if not is_free(port, host):
            problems.append(describe(part, port))
    if problems:
        raise PortsTaken("\n".join(problems))
