"""What every benchmark records about the machine it ran on (bench/run.py, service.py, cluster.py, fhir.py).

Standard library only, like the scripts: they import it as ``_machine`` (their own folder is on
``sys.path`` when run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def _proc(file: str, key: str) -> str | None:
    """The value of ``key`` in a /proc file (``/proc/cpuinfo``'s model name, ``/proc/meminfo``'s MemTotal)."""
    try:
        for line in Path(file).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def describe(*packages: str) -> dict[str, Any]:
    """The machine, the interpreter, the load when the run began, and the versions of ``packages``."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:
        cores = os.cpu_count() or 1
    memory = _proc("/proc/meminfo", "MemTotal")
    versions = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "?"
    return {"uname": " ".join(platform.uname()[:3] + platform.uname()[4:5]),
            "cpu": _proc("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
            "cores": cores, "memory_gb": round(int(memory.split()[0]) / 1024 / 1024, 1) if memory else None,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "load_1min": round(os.getloadavg()[0], 2), "versions": versions}


def summary(info: dict[str, Any]) -> str:
    """One line for a report: CPU, cores, memory, Python and the load when the run began."""
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; Python {info['python']}; "
            f"load {info['load_1min']}")
