"""Finding the etcd binary, and the errors when there is none."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hprose_cluster.embedded import binary
from hprose_cluster.embedded import EmbeddedEtcd, find_etcd_binary
from hprose_cluster.errors import EtcdError


def test_find_etcd_binary_is_executable() -> None:
    path = find_etcd_binary()
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    assert "etcd Version" in out.stdout


def test_no_binary_anywhere_gives_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(binary.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(binary, "_SYSTEM_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EtcdError) as info:
        find_etcd_binary()
    message = str(info.value)
    assert "hprose-cluster[embedded]" in message and "etcd-server" in message


def test_missing_binary_path_gives_clear_error(tmp_path: Path) -> None:
    server = EmbeddedEtcd(tmp_path / "data", binary=str(tmp_path / "no-such-etcd"))
    with pytest.raises(EtcdError, match="no-such-etcd.*hprose-cluster\\[embedded\\]"):
        server.start()
    assert not server.running
    server.close()

