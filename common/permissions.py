"""Owner-only files: a stack's run directory, sockets, ring, gallery and records hold faces.

Every service sets the umask PRIVATE_UMASK at start (common/service.py), so whatever it creates
(recorder files, ipc sockets, directories) is its user's only; the run directory is made (or
tightened to) 0700, and files that may be made by other programs first (the gallery, by
`facetrack enroll` from a shell) get their mode set explicitly.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077


def private_dir(path: str | os.PathLike) -> Path:
    """Make `path` (and parents) if missing, mode 0700; an existing one of ours is tightened to 0700.

    A directory that is not ours, or is sticky (a shared /tmp), is left alone with one warning.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if st.st_uid == os.geteuid() and not mode & stat.S_ISVTX:
            os.chmod(path, 0o700)
            log.info("%s was mode %04o: now 0700 (it holds sockets, logs and faces)", path, mode)
        else:
            log.warning("%s is mode %04o and not this user's own directory: others may reach what is in it", path, mode)
    return path


def private_file(path: str | os.PathLike) -> None:
    """Create `path` empty with mode 0600 if missing; an existing file of ours is tightened to 0600."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o600)
