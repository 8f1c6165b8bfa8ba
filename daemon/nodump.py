"""Keep raw frames out of core files: the process makes itself non-dumpable at start.

A core dump holds the process's memory, and with it the raw frames waiting to be masked (a crash
outside systemd, with ``ulimit -c unlimited`` as in a shell, a container or ``scripts/demo.sh``,
wrote 261 MB holding the luma rows of 7 source frames). The unit's ``LimitCORE=0`` covers only
systemd, so every command that decodes frames calls :func:`forbid_core_dumps` first:

* ``RLIMIT_CORE`` soft limit 0: no core file (the hard limit is left as it was, so that a
  program that runs these commands in its own process, as the tests do, can still start
  children with cores allowed; raising it back does not help, see the next point);
* ``PR_SET_DUMPABLE`` 0: no core even if someone raises the limit from outside (``prlimit``),
  and no ptrace attach by other processes of the same user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def forbid_core_dumps() -> bool:
    """Returns True when both protections are in place (False off Linux, after logging why)."""
    ok = True
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot set RLIMIT_CORE to 0: %s", exc)
        ok = False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    except (OSError, AttributeError) as exc:
        log.warning("cannot make the process non-dumpable: %s", exc)
        ok = False
    return ok
