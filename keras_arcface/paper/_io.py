"""The paper's writers: atomic text/JSON (:mod:`keras_arcface._io`), figures, matplotlib."""

from keras_arcface._io import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["atomic_save_figure", "atomic_write_json", "atomic_write_text", "require_matplotlib"]


def atomic_save_figure(figure, path, dpi=120):
    """Saves a matplotlib figure as PNG to ``path`` atomically, then closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=dpi, format="png", bbox_inches="tight")
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
