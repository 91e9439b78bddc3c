"""Cut one member of an ``EtcdCluster`` off from the others, with iptables rules on ``lo``.

The member stays alive and keeps answering on its client port; only peer traffic stops, so
it loses its leader and its revision freezes, as a member behind a network partition does.

Every rule matches only this cluster's peer ports, so nothing else on the machine is touched:

- packets to or from the member's own peer port (the other members' connections to it);
- packets of the member's own connections to the other members' peer ports, both ways.  They
  are told apart from the other members' connections by the member's group id (each member
  runs with one of its own, ``EmbeddedEtcd.group``, matched with ``-m owner --gid-owner``);
  the owner is known only for the packets the member sends, so those mark their connection
  (``CONNMARK``) and every packet of a marked connection is dropped: a leader writing on a
  stream the member opened would otherwise still reach it until the TCP window fills.

``heal()`` deletes exactly the rules ``cut()`` inserted; use it in a ``finally``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import pytest

from hprose_cluster.embedded import EtcdCluster
from hprose_cluster.errors import EtcdError


def require_iptables() -> None:
    """Skip the calling test unless we are root with a working iptables."""
    if os.geteuid() != 0:
        pytest.skip("cutting an etcd member off needs root (iptables rules on lo)")
    if shutil.which("iptables") is None:
        pytest.skip("iptables is not installed (.ci/run installs it)")
    probe = subprocess.run(["iptables", "-w", "5", "-S", "OUTPUT"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("iptables does not work here: %s" % probe.stderr.strip())


def partitionable_cluster(size: int = 3, **options: Any) -> EtcdCluster:
    """An EtcdCluster (not started) whose members each run with a group id of their own."""
    cluster = EtcdCluster(size, **options)
    for member in cluster.members:
        # any gid will do as root; derived from the port so two clusters never share one
        member.group = 40000 + member.peer_port % 20000
    return cluster


class PeerCut:
    """Rules cutting member ``index`` of ``cluster`` off from its peers (see the module)."""

    def __init__(self, cluster: EtcdCluster, index: int):
        member = cluster.members[index]
        if member.group is None:
            raise ValueError("make the cluster with partitionable_cluster()")
        own = str(member.peer_port)
        mark = str(member.group)
        others = ",".join(str(m.peer_port) for i, m in enumerate(cluster.members) if i != index)
        self.rules = [
            ["OUTPUT", "-o", "lo", "-p", "tcp", "--dport", own, "-j", "DROP"],
            ["OUTPUT", "-o", "lo", "-p", "tcp", "--sport", own, "-j", "DROP"],
            ["OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner", "--gid-owner", str(member.group),
             "-m", "multiport", "--dports", others, "-j", "CONNMARK", "--set-mark", mark],
            ["OUTPUT", "-o", "lo", "-p", "tcp", "-m", "multiport", "--ports", others,
             "-m", "connmark", "--mark", mark, "-j", "DROP"],
        ]
        self._inserted: list[list[str]] = []

    def cut(self) -> None:
        # at the top of the chain, in order: the mark before the drop it feeds
        for position, rule in enumerate(self.rules, 1):
            subprocess.run(["iptables", "-w", "5", "-I", rule[0], str(position)] + rule[1:],
                           check=True, timeout=30)
            self._inserted.append(rule)

    def heal(self) -> None:
        while self._inserted:
            rule = self._inserted.pop()
            subprocess.run(["iptables", "-w", "5", "-D"] + rule, check=False, timeout=30)

    def __enter__(self) -> "PeerCut":
        self.cut()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.heal()


def wait_for_majority_leader(cluster: EtcdCluster, cut: int, timeout: float) -> int:
    """Wait until the members other than ``cut`` agree on a leader among themselves; its
    index.  (Right after the leader is cut off, the others still name it for a while.)"""
    deadline = time.monotonic() + timeout
    while True:
        leaders = set()
        ids = {}
        for i, member in enumerate(cluster.members):
            if i == cut:
                continue
            try:
                status = member.status(timeout=1.0)
            except EtcdError:
                continue
            ids[str(status["header"]["member_id"])] = i
            leaders.add(str(status.get("leader", "0")))
        if len(leaders) == 1:
            (leader,) = leaders
            if leader in ids:
                return ids[leader]
        if time.monotonic() > deadline:
            raise AssertionError("the majority elected no leader within %g s" % timeout)
        time.sleep(0.05)
