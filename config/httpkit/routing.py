"""One URL, a view per method."""

from __future__ import annotations

from collections.abc import Callable

from config.httpkit.errors import error_response


def methods(**handlers: Callable) -> Callable:
    """One URL, a view per method; 405 with the error shape for any other method."""

    def dispatch(request, *args, **kwargs):
        handler = handlers.get(request.method.lower())
        if handler is None:
            allowed = ", ".join(sorted(m.upper() for m in handlers))
            response = error_response(405, "method_not_allowed", f"allowed: {allowed}")
            response["Allow"] = allowed
            return response
        return handler(request, *args, **kwargs)

    dispatch.csrf_exempt = True
    return dispatch
