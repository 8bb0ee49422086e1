"""Keeps database passwords out of everything a person can read.

Django's debug page masks settings whose *name* looks secret (`PASSWORD`), but
shows a URL such as `postgres://app:s3cret@db/blog` in clear wherever it sits:
a setting, `request.META` (runserver copies the environment into it), a local
variable of a traceback frame. The filter and reporter below mask passwords in
URLs and libpq conninfo strings anywhere, and every configured database
password literally, in the finished page too.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, unquote

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

MASK = "********"
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"<>]*:)(?P<pw>[^@\s'\"<>]+)(?=@)")
_CONNINFO_PASSWORD = re.compile(r"(?i)(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s'\"<>&]+)")


def configured_passwords() -> set[str]:
    """Every database password in the settings, raw and percent-encoded (as in URLs)."""
    from django.conf import settings

    found: set[str] = set()
    for entry in getattr(settings, "DATABASES", {}).values():
        for d in (entry, entry.get("DIRECT") or {}):
            pw = d.get("PASSWORD") or ""
            if len(pw) >= 4:  # masking a 1-3 character string would garble the page, and it is no secret
                found.update({pw, quote(pw, safe=""), unquote(pw), html.escape(pw)})
    return found


def redact(text: str, extra: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with passwords of URLs and conninfo strings, and every known password, masked."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m["pre"] + MASK, text)
    text = _CONNINFO_PASSWORD.sub(lambda m: m["pre"] + MASK, text)
    for secret in sorted(extra, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m["pre"] + MASK, url)


class _Shown:
    """A value already turned into safe text; pprint shows it as is."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class RedactingFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: URL and conninfo passwords masked in every setting,
    META entry and traceback variable, whatever its name."""

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):  # lazy strings too
            return redact(str(cleansed), configured_passwords())
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        from pprint import pformat

        secrets = configured_passwords()
        out = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            value = self.cleanse_setting(name, value)
            try:
                text = pformat(value)
            except Exception:  # a broken __repr__: show its type only
                text = f"<{type(value).__name__} object>"
            out.append((name, _Shown(redact(text, secrets))))
        return out


class RedactingReporter(ExceptionReporter):
    """The debug page and its text twin, passed through `redact` as a last line of defence
    (exception messages, template debug, anything the filter does not see)."""

    def get_traceback_html(self):
        return redact(str(super().get_traceback_html()), configured_passwords())

    def get_traceback_text(self):
        return redact(str(super().get_traceback_text()), configured_passwords())
