"""The websocket origin check: a page on another site must not ride the user's session cookie.

Browsers do not apply the same-origin policy to websockets; they only send `Origin`. A socket is
let through when its Origin names exactly this site, scheme, host and port alike (Channels'
AllowedHostsOriginValidator compares host names only, so `http://localhost:9999` passed for a
server on `localhost:8000`), the same rule as Django's CSRF origin check:

- the Host header must be one of ALLOWED_HOSTS (a DNS-rebinding page has a matching Origin and Host
  of its own), and the Origin must equal `<scheme>://<Host>`, where the scheme is https behind TLS,
  or when SECURE_PROXY_SSL_HEADER says the proxy in front took TLS off;
- or the Origin is one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` for subdomains), for a
  proxy that rewrites Host.

No Origin header, several, or no Host header: refused, as Channels refuses a missing Origin.
Every browser sends both; a script that talks to the websockets sets them itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "https": 443}

# (scheme, host, port): the parts of an origin that must all match.
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _header(scope, name: bytes) -> list[str]:
    return [value.decode("latin1") for key, value in scope.get("headers", []) if key.lower() == name]


def _scheme(scope) -> str:
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, name)
        if forwarded:
            return "https" if forwarded[-1].split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def _allowed_hosts() -> list[str]:
    # As Django's HttpRequest.get_host(): with DEBUG and no ALLOWED_HOSTS, local names only.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _site_origin(scope) -> Origin | None:
    """This site as the browser addressed it, when the Host header names an allowed host."""
    hosts = _header(scope, b"host")
    if len(hosts) != 1:
        return None
    domain, _ = split_domain_port(hosts[0])
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return parse_origin(f"{_scheme(scope)}://{hosts[0]}")


def _trusted(value: str, origin: Origin) -> bool:
    # As Django's CsrfViewMiddleware: exact origins, or `scheme://*.domain[:port]` for subdomains.
    netloc = urlsplit(value.strip()).netloc.lower()
    for pattern in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, trusted_netloc = pattern.lower().partition("://")
        if trusted_netloc.startswith("*"):
            if scheme == origin[0] and is_same_domain(netloc, trusted_netloc[1:]):
                return True
        elif parse_origin(pattern) == origin:
            return True
    return False


def origin_allowed(scope) -> bool:
    origins = _header(scope, b"origin")
    origin = parse_origin(origins[0]) if len(origins) == 1 else None
    if origin is None:
        return False
    return origin == _site_origin(scope) or _trusted(origins[0], origin)


class SameOriginValidator:
    """ASGI middleware for the websocket router: refuses the handshake (403) of a foreign origin."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator guards websocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
