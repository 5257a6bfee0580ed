"""Atomic file writes shared by the paper's figure and table writers."""

import json
import os
import tempfile


def _make_readable(path):
    # mkstemp creates files with mode 0600; give them the permissions a plain open() would.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted run leaves the
    previous version in place.

    Args:
        path: destination file; its folder is created when missing.
        text: the whole content, written as UTF-8.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        _make_readable(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def atomic_write_json(path, payload):
    """Writes ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def atomic_save_figure(figure, path, dpi=120):
    """Saves a matplotlib figure as PNG to ``path`` atomically, then closes it."""
    import matplotlib.pyplot as plt

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temp_path, dpi=dpi, format="png", bbox_inches="tight")
        _make_readable(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
    finally:
        plt.close(figure)


def require_matplotlib():
    """Imports matplotlib with the non-interactive Agg backend, or explains how to install it."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "The paper's figures need matplotlib. Install it with "
            '`pip install "keras-arcface[plot]"`.'
        ) from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
