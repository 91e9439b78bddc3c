"""A static etcd cluster of several ``EmbeddedEtcd`` members on loopback: ``EtcdCluster``."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Sequence

from ..errors import EtcdError
from .member import EmbeddedEtcd, new_token
from .process import free_ports


class EtcdCluster:
    """A static etcd cluster of ``size`` members on loopback (names ``m0``, ``m1``, ...).

    Members live in ``base_dir/m<i>/`` (a temporary folder if ``base_dir`` is None, removed by
    :meth:`close`).  :meth:`kill` and :meth:`restart` act on one member; a restarted member
    rejoins with its data dir and ``--initial-cluster-state existing``.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        fast: bool = True,
        base_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        self._temp_dir: Path | None = None
        if base_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="hprose-cluster-etcd-cluster-"))
            base = self._temp_dir
        else:
            base = Path(base_dir).absolute()
        self.base_dir = base
        token = new_token()
        ports = free_ports(2 * size, host)
        client_ports, peer_ports = ports[:size], ports[size:]
        initial_cluster = ",".join(
            f"m{i}=http://{host}:{peer_ports[i]}" for i in range(size)
        )
        self.members: list[EmbeddedEtcd] = [
            EmbeddedEtcd(
                base / f"m{i}" / "data",
                host=host,
                client_port=client_ports[i],
                peer_port=peer_ports[i],
                name=f"m{i}",
                fast=fast,
                extra_args=extra_args,
                initial_cluster=initial_cluster,
                initial_cluster_token=token,
                log_path=base / f"m{i}" / "etcd.log",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        """``"host:port"`` of every member's client port."""
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30) -> "EtcdCluster":
        """Start every member, then wait until all are healthy (they elect a leader together,
        so they must all be launched before any can become healthy)."""
        try:
            for member in self.members:
                if not member.running:
                    member.launch()
            deadline = time.monotonic() + timeout
            for member in self.members:
                member.wait_ready(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.kill_all()
            raise
        return self

    def leader_index(self, timeout: float = 5.0) -> int:
        """Index of the current leader in :attr:`members`, asked of the running members."""
        deadline = time.monotonic() + timeout
        last_problem = "no member answered"
        while True:
            ids: dict[str, int] = {}
            leaders: set[str] = set()
            for i, member in enumerate(self.members):
                if not member.running or member.paused:
                    continue
                try:
                    status = member.status(timeout=1.0)
                except EtcdError as exc:
                    last_problem = str(exc)
                    continue
                ids[str(status["header"]["member_id"])] = i
                leader = str(status.get("leader", "0"))
                if leader != "0":
                    leaders.add(leader)
            if len(leaders) == 1:
                (leader,) = leaders
                if leader in ids:
                    return ids[leader]
                last_problem = f"leader {leader} is not a running member"
            elif len(leaders) > 1:
                last_problem = f"members disagree on the leader: {sorted(leaders)}"
            if time.monotonic() >= deadline:
                raise EtcdError(f"no leader found in cluster {self.endpoints}: {last_problem}")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i``."""
        self.members[i].kill()

    def stop(self, i: int) -> None:
        """Stop member ``i`` cleanly."""
        self.members[i].stop()

    def restart(self, i: int, timeout: float = 20) -> EmbeddedEtcd:
        """(Re)start member ``i`` on its data dir; it rejoins as an existing member."""
        member = self.members[i]
        member.stop()
        member.initial_cluster_state = "existing"
        return member.start(timeout)

    def kill_all(self) -> None:
        for member in self.members:
            member.kill()

    def close(self) -> None:
        """Stop every member and remove the temporary folder if this object created it.

        The leader goes first: stopped while followers run, it hands over leadership in ~1 s,
        and the followers then stop at once; stopped last (or all at once) each member waits
        for a leader that is gone, several seconds in all.
        """
        order = list(range(len(self.members)))
        try:
            leader = self.leader_index(timeout=0.5)
            order.remove(leader)
            order.insert(0, leader)
        except EtcdError:
            pass
        for i in order:
            self.members[i].close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
