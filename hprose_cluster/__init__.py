"""hprose-cluster: a set of hprose servers as one service, with etcd as the registry."""
