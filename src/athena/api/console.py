"""`/admin`: the operator's console, a static page (HTML, one script, one style sheet) shipped in the package.

The page and its assets carry no data, so they are served without the token; everything they show comes from
the /athena API, which the page calls with the token the operator typed (kept in the page's memory only, so no
cookie can be ridden by another site). A strict Content-Security-Policy allows only these same-origin files:
no inline script, no inline style, no other origin (it works offline on a home network).
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_FILES = {name: (resources.files("athena.api") / "console" / name).read_bytes() for name in _TYPES}


def _asset(name: str) -> Response:
    return Response(_FILES[name], media_type=_TYPES[name], headers=HEADERS)


async def page(request: Request) -> Response:
    return _asset("index.html")


async def script(request: Request) -> Response:
    return _asset("console.js")


async def style(request: Request) -> Response:
    return _asset("console.css")


routes = [
    Route("/admin", page, methods=["GET"]),
    Route("/admin/", page, methods=["GET"]),
    Route("/admin/console.js", script, methods=["GET"]),
    Route("/admin/console.css", style, methods=["GET"]),
]
