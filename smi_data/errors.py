"""One base for every error legsmi raises on purpose, and the exit code that goes with it.

The command line catches :class:`LegsmiError` once (``cli.main``) and prints its message
without a traceback. ``exit_code`` says what kind of failure it is:

* 2 - the command as given cannot run: a bad option, an output that exists, an output
  that would replace an input (fix the command line);
* 1 - the command ran and failed: unusable data, a damaged model folder, a full or
  read-only disk, every fit of a model failed (fix the data or the environment).

A photo that cannot be measured is not an error of the command: batch commands skip
it, say why, and go on.
"""

from __future__ import annotations

#: Exit status for a command line that cannot run as given.
EXIT_USAGE = 2
#: Exit status for a command that ran and failed.
EXIT_FAILURE = 1
#: Exit status after SIGINT / SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class LegsmiError(Exception):
    """Base of every deliberate legsmi error; the message says what is wrong and what to do."""

    exit_code = EXIT_FAILURE


class UsageError(LegsmiError, ValueError):
    """A command line or configuration that cannot run (bad override, bad option value)."""

    exit_code = EXIT_USAGE


class OutputError(LegsmiError, OSError):
    """An output that cannot be written (disk full, read-only file system, no permission)."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a run; the run record says ``interrupted``."""

    def __init__(self, signame: str = "SIGINT"):
        super().__init__(signame)
        self.signame = signame


def describe_os_error(exc: OSError, what: str = "") -> str:
    """A one-line message for an OSError met while writing, with what to do."""
    import errno

    where = f"{exc.filename}: " if getattr(exc, "filename", None) else (f"{what}: " if what else "")
    hint = {
        errno.ENOSPC: "the disk is full; free space or choose another --out",
        errno.EROFS: "the file system is read-only; choose another --out",
        errno.EACCES: "permission denied; choose another --out",
        errno.EPERM: "operation not permitted; choose another --out",
        errno.ENAMETOOLONG: "the path is too long; use a shorter one",
        errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
    }.get(exc.errno, "")
    text = exc.strerror or str(exc)
    return f"{where}{text}" + (f"; {hint}" if hint else "")
