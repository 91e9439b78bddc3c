"""Asking an etcd server about itself over plain HTTP (``GET /health`` and the JSON gateway
``POST /v3/maintenance/status``), so the embedded harness never imports the etcd client: the
project keeps every use of ``etcd3`` inside ``hprose_cluster/etcd/``.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any, Sequence


def http_json(url: str, method: str, payload: Any, timeout: float,
              context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """One JSON request to ``url``; the decoded JSON object (raises on any failure)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    # No proxies: an HTTP_PROXY in the environment must not intercept loopback calls.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=timeout) as response:
        result = json.loads(response.read() or b"{}")
    return result if isinstance(result, dict) else {"value": result}


def health_ssl_context(extra_args: Sequence[str]) -> ssl.SSLContext:
    """For health checks of an https server on loopback: no verification of its certificate,
    and our client certificate (``--cert-file``/``--key-file``) if it requires one."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    options = parse_flags(extra_args)
    if "--client-cert-auth" in options and "--cert-file" in options and "--key-file" in options:
        context.load_cert_chain(options["--cert-file"], options["--key-file"])
    return context


def parse_flags(args: Sequence[str]) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` pairs of an etcd command line (bare flags -> "")."""
    flags: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            if "=" in item:
                key, value = item.split("=", 1)
                flags[key] = value
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                flags[item] = items[i + 1]
                i += 1
            else:
                flags[item] = ""
        i += 1
    return flags
