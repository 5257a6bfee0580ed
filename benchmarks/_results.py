"""What every benchmark records: the machine it ran on, and its JSON result written atomically."""

import os
import platform

from keras_arcface._io import atomic_write_json


def machine_info(**versions):
    """CPU model, core count, platform, Python, the given package versions and the load average.

    Args:
        **versions: package name -> version string, e.g. ``tensorflow=tf.__version__``.

    Example:
        >>> info = machine_info(numpy="2.4.6")
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        # Other work on the cores skews absolute numbers; recorded to judge them.
        "load_average_1_5_15_min": [round(value, 2) for value in os.getloadavg()],
    }


def write_json(path, payload):
    """Writes ``payload`` to ``path`` via a temporary file: no half-written result remains."""
    atomic_write_json(path, payload)
