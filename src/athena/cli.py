"""`athena serve | chat | sessions`: run the gateway, talk to it from a terminal, look at its sessions.

Bad settings end with one line naming the variable and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from athena import __version__
from athena.config import BadSetting, Settings, unknown_variables
from athena.config import load_settings as config_load_settings
from athena.records import InvalidDeviceId, validate_device_id

EXIT_BAD_SETTINGS = 2


class CliError(Exception):
    """A message for the terminal (exit code 1)."""


def load_settings() -> Settings:
    """The settings, or exit 2 with one line naming the bad one; unknown ATHENA_* variables are warnings."""
    for warning in unknown_variables(os.environ):
        print(f"athena: warning: {warning}", file=sys.stderr)
    try:
        return config_load_settings()
    except BadSetting as exc:
        raise SystemExit(_bad(str(exc))) from None


def _bad(message: str) -> int:
    print(f"athena: bad setting {message}", file=sys.stderr)
    return EXIT_BAD_SETTINGS


def redact(url: str) -> str:
    """A URL fit for a log line: any password replaced."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- serve ---------------------------------------------------------------------------------------
def wyoming_line(settings: Settings) -> str:
    if settings.wyoming_address is None:
        return "off (set ATHENA_WYOMING_PORT to add Athena to HA without the integration)"
    host, port = settings.wyoming_address
    allow = settings.wyoming_allow or "any peer (no token: keep it on the LAN, see ATHENA_WYOMING_ALLOW)"
    return f"tcp://{host}:{port}, allowed: {allow}"


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from athena.api import create_app
    from athena.observability import configure_logging

    settings = load_settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    configure_logging(settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except OSError as exc:  # the data dir or token file cannot be written
        print(f"athena: cannot prepare {settings.data_dir}: {exc}", file=sys.stderr)
        return 1
    token = app.state.token
    fallback = (
        f" (fallback {settings.llm_fallback_api} {settings.llm_fallback_model})"
        if settings.llm_fallback_url
        else ""
    )
    ha = "on" if settings.local_intents else "off (set ATHENA_HA_URL and ATHENA_HA_TOKEN)"
    where = (
        "from ATHENA_API_TOKEN"
        if token.source == "ATHENA_API_TOKEN"
        else (f"{'generated into' if token.generated else 'in'} {token.source}")
    )
    print(
        f"Athena {__version__} on http://{host}:{port}\n"
        f"  store       {redact(settings.store_url)}\n"
        f"  LLM         {settings.llm_api} {settings.llm_model} at {redact(settings.llm_url)}{fallback}\n"
        f"  local path  'start over' on; Home Assistant intents {ha}\n"
        f"  API token   {where}\n"
        f"  Wyoming     {wyoming_line(settings)}\n"
        f"  try it      athena chat --device office",
        flush=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0


# -- client side (chat, sessions) ----------------------------------------------------------------
class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        import httpx

        settings = load_settings()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        self.url = (args.url or os.environ.get("ATHENA_URL") or f"http://{host}:{settings.port}").rstrip("/")
        token = args.token or (settings.api_token.get_secret_value() if settings.api_token else None)
        if not token:
            from athena.api.auth import read_token_file, token_path

            token = read_token_file(settings)
            if not token:
                raise CliError(
                    f"no API token: set ATHENA_API_TOKEN or pass --token ({token_path(settings)} not found)"
                )
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120.0
        )
        self._httpx = httpx

    def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        try:
            resp = self._http.request(method, path, json=json)
        except self._httpx.HTTPError as exc:
            raise CliError(
                f"cannot reach the gateway at {self.url}: {exc} (is `athena serve` running?)"
            ) from None
        if resp.status_code == 401:
            raise CliError("the gateway refused the API token (set ATHENA_API_TOKEN or pass --token)")
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        return resp.status_code, data

    def close(self) -> None:
        self._http.close()


def _error_text(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message"))
    return str(data)


def chat(args: argparse.Namespace) -> int:
    client = Client(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Talking to {client.url} as device '{args.device}'. /new starts over, Ctrl-D quits.")
    try:
        while True:
            try:
                line = input("you> " if interactive else "")
            except EOFError:
                break
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/new":
                client.call("DELETE", f"/athena/sessions/{args.device}")
                print("(new conversation)", flush=True)
                continue
            body = {"text": line, "device_id": args.device, "device_name": args.name or args.device}
            if args.area:
                body["area"] = args.area
            status, data = client.call("POST", "/ha/conversation", body)
            if status != 200:
                print(
                    f"athena: the gateway answered {status}: {_error_text(data)}", file=sys.stderr, flush=True
                )
                continue
            print(f"athena> {data['response']['speech']['plain']['speech']}", flush=True)
    finally:
        client.close()
    return 0


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def sessions(args: argparse.Namespace) -> int:
    client = Client(args)
    try:
        if args.action == "list":
            status, data = client.call("GET", "/athena/sessions")
            if status != 200:
                raise CliError(_error_text(data))
            rows = data["sessions"]
            if not rows:
                print("no live sessions")
                return 0
            now = time.time()
            print(f"{'DEVICE':<32} {'SESSION':<28} {'TURNS':>5} {'IDLE':>8} {'ENDS IN':>8}")
            for s in rows:
                print(
                    f"{s['device']:<32} {s['id']:<28} {s['turns']:>5} {_ago(now - s['last_activity']):>8} "
                    f"{_ago(s['expires_in']):>8}"
                )
            return 0
        status, data = client.call(
            "GET" if args.action == "show" else "DELETE", f"/athena/sessions/{args.device}"
        )
        if status == 404:
            print(f"no live session for {args.device}")
            return 1
        if status != 200:
            raise CliError(_error_text(data))
        if args.action == "clear":
            print(f"cleared the session of {args.device}")
            return 0
        print(
            f"session {data['id']} of {data['device']}: {data['turns']} turns, "
            f"ends in {_ago(data['expires_in'])} ({data['expires_reason']})"
        )
        for m in data["messages"]:
            print(f"  {m['role']:>9}: {m['content']}")
        return 0
    finally:
        client.close()


def _device_arg(value: str) -> str:
    """A device id checked before anything is sent: a bad one would fail every turn with a 422."""
    try:
        return validate_device_id(value)
    except InvalidDeviceId as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="athena", description="Conversation gateway for Home Assistant voice."
    )
    parser.add_argument("--version", action="version", version=f"athena {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway (settings from ATHENA_* variables)")
    p.add_argument("--host", help="address to bind (default ATHENA_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default ATHENA_PORT, 8000)")
    p.set_defaults(func=serve)

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="gateway URL (default ATHENA_URL, else from ATHENA_HOST/ATHENA_PORT)")
        p.add_argument("--token", help="API token (default ATHENA_API_TOKEN, else <data_dir>/api_token)")

    p = sub.add_parser("chat", help="talk to a running gateway as one device")
    p.add_argument(
        "--device", default="terminal", type=_device_arg,
        help="device id whose session to use (default: terminal): 1-128 of A-Z a-z 0-9 . _ : @ / -",
    )
    p.add_argument("--name", help="device name the LLM is told (default: the device id)")
    p.add_argument("--area", help="area the device is in, e.g. Office")
    client_args(p)
    p.set_defaults(func=chat)

    p = sub.add_parser("sessions", help="list, show or clear live sessions")
    actions = p.add_subparsers(dest="action", required=True)
    client_args(actions.add_parser("list", help="every live session"))
    for action, text in (("show", "one device's session and history"), ("clear", "end one device's session")):
        a = actions.add_parser(action, help=text)
        a.add_argument("device", type=_device_arg)
        client_args(a)
    p.set_defaults(func=sessions)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        print(f"athena: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
