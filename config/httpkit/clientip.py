"""The client's address, for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

X-Forwarded-For is believed only as far as DJANGO_TRUSTED_PROXY_COUNT says proxies
append to it; with no proxy (0) any client could write it, so REMOTE_ADDR is used.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """REMOTE_ADDR without a trusted proxy; behind N proxies, the Nth address from the right of
    X-Forwarded-For (what the outermost trusted proxy saw), as each proxy appends its peer."""
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count < 1:
        return remote
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:  # reached gunicorn without the proxy (a probe, a local client)
        return remote
    # Fewer hops than proxies: every one there was written by a trusted proxy, the leftmost is the client.
    chosen = hops[-count] if len(hops) >= count else hops[0]
    return _address(chosen) or remote
