"""EtcdConnection against a real etcd: behaviour of the gRPC channels under our options."""

import time

from hprose_cluster.errors import EtcdError
from hprose_cluster.etcd import EtcdConfig, EtcdConnection


def test_a_fresh_connection_works_right_after_etcd_comes_back(etcd_factory):
    """gRPC shares subchannels between channels by default: a connection made just after
    etcd restarted inherited a subchannel still in reconnect backoff and failed at once
    (13 times out of 15 before each channel got its own subchannel pool)."""
    server = etcd_factory()
    config = EtcdConfig((server.endpoint,), timeout=2)
    with EtcdConnection(config) as survivor:
        survivor.grant(5)
        for _ in range(4):
            server.kill()
            for _ in range(3):  # the surviving channel fails and backs off
                try:
                    survivor.grant(5)
                except EtcdError:
                    pass
                time.sleep(0.3)
            server.start()
            with EtcdConnection(config) as fresh:
                assert fresh.grant(5) > 0
