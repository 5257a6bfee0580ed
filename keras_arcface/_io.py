"""Atomic writes: a reader never sees a half-written file, a crash keeps the previous version.

Every writer in the package goes through these helpers: the new content is written to a
temporary name in the destination's own folder (so the final step is a same-filesystem
rename) and renamed over the destination only after the writer finished without raising. On
any exception the temporary file or folder is removed and the destination is left as it was.
This module imports only the standard library, so every layer of the package may use it.
"""

import contextlib
import json
import os
import shutil
import tempfile


def _umask_permissions(base):
    # mkstemp/mkdtemp create 0600/0700 entries; give them what a plain open()/mkdir() would.
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _prepare_folder(path):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return path, folder, os.path.basename(path)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary file path beside ``path``; renames it onto ``path`` on success.

    Use it when a library writes the file itself (``model.save``, ``np.save``,
    ``figure.savefig``). The temporary name keeps the destination's extension, because
    those writers pick their format from it.

    Args:
        path: destination file; its folder is created when missing.
        suffix: extension of the temporary file; default: the extension of ``path``.

    Example:
        >>> with atomic_path("model.keras") as temporary:  # doctest: +SKIP
        ...     model.save(temporary)
    """
    path, folder, name = _prepare_folder(path)
    if suffix is None:
        suffix = os.path.splitext(name)[1]
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, _umask_permissions(0o666))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Like ``open(path, mode)``, but the file appears at ``path`` only when the block succeeds.

    Args:
        path: destination file; its folder is created when missing.
        mode: ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
        **kwargs: passed to ``open`` (``newline``, ``encoding``).

    Example:
        >>> with atomic_open("labels.tsv") as handle:  # doctest: +SKIP
        ...     handle.write("0\\talice\\n")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb'. Received: mode={mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as temporary:
        with open(temporary, mode, **kwargs) as handle:
            yield handle


def atomic_write_bytes(path, data):
    """Writes ``data`` (bytes) to ``path`` atomically and returns ``path``.

    Example:
        >>> atomic_write_bytes("model.tflite", flatbuffer)  # doctest: +SKIP
    """
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return os.fspath(path)


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` as UTF-8, atomically, and returns ``path``.

    Example:
        >>> atomic_write_text("table.md", "| loss | TAR |\\n")  # doctest: +SKIP
    """
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return os.fspath(path)


def atomic_write_json(path, payload, *, indent=2, sort_keys=False, allow_nan=True, default=None):
    """Writes ``payload`` as indented JSON (with a final newline) atomically; returns ``path``.

    The payload is serialised before the file is opened, so a value JSON cannot hold raises
    ``TypeError``/``ValueError`` and leaves the destination untouched.

    Args:
        path: destination file; its folder is created when missing.
        payload: JSON-serialisable object.
        indent, sort_keys, allow_nan, default: as in ``json.dumps``.

    Example:
        >>> atomic_write_json("summary.json", {"accuracy": 0.95})  # doctest: +SKIP
    """
    text = json.dumps(
        payload, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, default=default
    )
    return atomic_write_text(path, text + "\n")


def replace_directory(source, path):
    """Moves the folder ``source`` to ``path``, replacing a folder already there.

    The old folder is renamed aside first and removed only after the new one is in place; if
    the second rename fails, the old folder is put back.
    """
    if not os.path.lexists(path):
        os.replace(source, path)
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(
            "Only a folder can be replaced by a folder; move the file away first. "
            f"Received: path={path!r}"
        )
    aside = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".old-")
    old = os.path.join(aside, "old")
    os.replace(path, old)
    try:
        os.replace(source, path)
    except BaseException:
        os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields an empty temporary folder beside ``path``; it replaces ``path`` on success.

    On an exception the temporary folder is removed and an existing ``path`` is untouched.

    Args:
        path: destination folder; its parent is created when missing.

    Example:
        >>> with atomic_directory("export/saved_model") as folder:  # doctest: +SKIP
        ...     archive.write_out(folder)
    """
    path, parent, name = _prepare_folder(path)
    temporary = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    try:
        yield temporary
        os.chmod(temporary, _umask_permissions(0o777))
        replace_directory(temporary, path)
    finally:
        if os.path.lexists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
