"""GET a component's HTTP endpoint (``/metrics``, ``/readyz``) with the CLI's own credentials: the context's
cluster CA, client certificate and bearer token, as ``kubectl get --raw`` does."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from cli.config import Target

MAX_BYTES = 64 * 1024 * 1024
"""More than any component's /metrics; a larger answer is cut off with an error rather than held in memory."""


class RawError(Exception):
    """The endpoint could not be read; the message says why in one line."""


def get(url: str, target: Target, *, timeout: float = 10.0) -> tuple[int, str]:
    """(HTTP status, body) of a GET; ``RawError`` when the endpoint cannot be reached."""
    ctx: ssl.SSLContext | None = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=target.certificate_authority or None)
        if target.client_certificate and target.client_key:
            ctx.load_cert_chain(target.client_certificate, target.client_key)
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    if target.token:
        request.add_header("Authorization", f"Bearer {target.token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:
            body = resp.read(MAX_BYTES + 1)
            status = int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code, err.read(4096).decode(errors="replace")
    except (urllib.error.URLError, OSError, ssl.SSLError) as err:
        reason = getattr(err, "reason", err)
        raise RawError(f"cannot reach {url}: {reason}") from None
    if len(body) > MAX_BYTES:
        raise RawError(f"{url} answered more than {MAX_BYTES // (1024 * 1024)} MiB")
    return status, body.decode(errors="replace")
