"""New files with the permissions a user expects: mode 0666 less the umask, as ``open``
gives a new file (``tempfile.mkstemp`` gives 0600, which the next user of a CI artefact
cannot read)."""
from __future__ import annotations

import os
import secrets


def new_file(folder: str, suffix: str) -> tuple:
    """A new hidden file ``.kerasonnx-<random><suffix>`` in ``folder``, open for writing:
    ``(descriptor, path)``. Raises OSError when the folder cannot be written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = os.path.join(folder, f".kerasonnx-{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
