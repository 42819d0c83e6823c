#!/usr/bin/env python3
"""Streams with the real moonlight-python client (0.3.0, which runs moonlight-common-c) through a
direwolf Wolf pool. Used by bins/tests/pack_e2e.rs, run inside the client's network namespace.

Commands (all take --host, --http-port and --client-dir; pairing is driver.py's `pair`):
  post-pin --pin PIN --secret S --user U [--password P] [--header "Name: value"]...
                                  POST the PIN (for user U, logged in with P) to direwolf's PIN
                                  page, with extra request headers
  admin-get --path P [--admin-port N] [--header "Name: value"]...
                                  HTTPS GET of P on the admin port (server certificate not
                                  checked), without a token: its status and body
  serverinfo                      HTTPS /serverinfo: state and current game
  probe --port N                  whether a TCP connect to the host's port N is refused
  stream --app NAME --until FILE --max-secs N [--pinned]
        launch NAME the way MoonlightClient.start_stream does (its _setup_stream: applist,
        /launch, then moonlight-common-c's LiStartConnection: RTSP handshake, control stream
        (ENet), video and audio streams), print {"event": "started", ...} once
        LiStartConnection returned, keep the stream up until FILE exists or N seconds passed,
        then print the final report: UDP datagrams this namespace received while streaming,
        whether/why the connection terminated, and the wall-clock time ("now", Unix seconds).
        A stream that ends by itself ends the wait at once. --pinned: ask /serverinfo over HTTPS
        with the server certificate pinned at pairing (moonlight-python alone asks over HTTP, where
        no client is told its running game), so that a running NAME is resumed (/resume).
  launch-times --app-id N --count K
        K rounds of moonlight-python's own /launch (NvHTTP.launch_app, fresh random keys) then
        /cancel (NvHTTP.quit_app); prints {"ok": true, "launch_secs": [...], "urls": [...]}: the
        wall time of each /launch until its sessionUrl0 arrived (a cold start each time, since
        cancel ends the stream). A failed launch ends the rounds with "ok": false.

Every report is one JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import driver  # noqa: E402  (the interop driver: pinned HTTPS client)

from moonlight_python import MoonlightClient  # noqa: E402
from moonlight_python.exceptions import HttpResponseError, MoonlightError, StreamStartError  # noqa: E402
from moonlight_python.http_client import NvHTTP  # noqa: E402
from moonlight_python.identity import Identity  # noqa: E402


emit = driver.emit


def udp_in_datagrams() -> int:
    """UDP datagrams delivered to sockets of this network namespace so far (/proc/net/snmp)."""
    lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("InDatagrams")])


def headers_of(lines: list[str]) -> dict[str, str]:
    return dict((part.strip() for part in line.split(":", 1)) for line in lines)


def cmd_post_pin(args: argparse.Namespace) -> None:
    body = {"pin": args.pin, "secret": args.secret, "user": args.user}
    if args.password is not None:
        body["password"] = args.password
    r = requests.post(f"http://{args.host}:{args.http_port}/pin/", json=body, headers=headers_of(args.header),
                      timeout=30)
    emit({"ok": r.status_code == 200, "status": r.status_code, "body": r.text.strip()})


def cmd_admin_get(args: argparse.Namespace) -> None:
    import urllib3
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    r = requests.get(f"https://{args.host}:{args.admin_port}{args.path}", headers=headers_of(args.header),
                     timeout=30, verify=False)
    emit({"ok": True, "status": r.status_code, "body": r.text.strip()})


def cmd_probe(args: argparse.Namespace) -> None:
    import socket
    try:
        with socket.create_connection((args.host, args.port), timeout=5):
            emit({"ok": True, "refused": False})
    except ConnectionRefusedError:
        emit({"ok": True, "refused": True})


def cmd_serverinfo(args: argparse.Namespace) -> None:
    http = driver.pinned_http(args, Identity(args.client_dir))
    xml = http.open_https("serverinfo")
    NvHTTP.verify_response_status(xml)
    info = http.parse_server_info(xml)
    emit({"ok": True, "state": info.state, "current_game": info.current_game})


def cmd_stream(args: argparse.Namespace) -> None:
    client = MoonlightClient(config_dir=args.client_dir)
    client.connect(args.host, args.http_port)
    if args.pinned:
        # As moonlight-qt and Android do once paired: /serverinfo over HTTPS, where the server
        # tells this client its running game, which moonlight-python then resumes.
        client._http.server_cert_pem = (Path(args.client_dir) / driver.CERT_FILE).read_bytes()
    before = udp_in_datagrams()
    t0 = time.monotonic()
    try:
        session, _decoder = client._setup_stream(args.app, 1280, 720, 60, args.bitrate, "h264",
                                                 record_audio=False)
    except StreamStartError as e:
        stage = getattr(e, "stage", None)
        name = None
        try:
            from moonlight_python.stream import StreamingSession
            s = StreamingSession()
            if stage is not None:
                name = s._ffi.string(s._lib.LiGetStageName(stage)).decode()
        except Exception:  # the name is informative only
            pass
        emit({"event": "failed", "ok": False, "error": "StreamStartError", "message": str(e),
              "stage": stage, "stage_name": name, "error_code": e.error_code,
              "udp_in": udp_in_datagrams() - before, "secs": time.monotonic() - t0})
        return
    except HttpResponseError as e:
        emit({"event": "failed", "ok": False, "error": "HttpResponseError", "status_code": e.status_code,
              "message": e.status_message})
        return
    except MoonlightError as e:
        emit({"event": "failed", "ok": False, "error": type(e).__name__, "message": str(e)})
        return
    started_at = udp_in_datagrams()
    emit({"event": "started", "ok": True, "udp_in": started_at - before, "secs": time.monotonic() - t0})
    deadline = time.monotonic() + args.max_secs
    while time.monotonic() < deadline and not os.path.exists(args.until):
        if session._connection_terminated.is_set():
            break
        session.drain_frames()
        time.sleep(0.1)
    terminated = session._connection_terminated.is_set()
    report = {"event": "done", "ok": True, "udp_in_while_streaming": udp_in_datagrams() - started_at,
              "terminated": terminated, "now": time.time(),
              "termination_code": getattr(session, "_termination_error_code", None) if terminated else None,
              "until_file_seen": os.path.exists(args.until)}
    session.stop()
    emit(report)


def cmd_quit(args: argparse.Namespace) -> None:
    http = driver.pinned_http(args, Identity(args.client_dir))
    try:
        http.quit_app()
    except (HttpResponseError, MoonlightError, requests.RequestException) as e:
        emit({"ok": False, "error": type(e).__name__, "message": str(e)})
        return
    emit({"ok": True})


def cmd_launch_times(args: argparse.Namespace) -> None:
    http = driver.pinned_http(args, Identity(args.client_dir))
    times, urls = [], []
    for _ in range(args.count):
        key, iv = os.urandom(16), os.urandom(4)
        t0 = time.monotonic()
        try:
            url = http.launch_app(args.app_id, 1280, 720, 60, 10000, 1, key, iv, 196610)
        except (HttpResponseError, MoonlightError, requests.RequestException) as e:
            emit({"ok": False, "error": type(e).__name__, "message": str(e), "launch_secs": times})
            return
        times.append(time.monotonic() - t0)
        urls.append(url)
        http.quit_app()
    emit({"ok": True, "launch_secs": times, "urls": urls})


def main() -> int:
    parser, sub = driver.command_parser(__doc__)
    p = sub.add_parser("post-pin")
    p.add_argument("--pin", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password")
    p.add_argument("--header", action="append", default=[])
    a = sub.add_parser("admin-get")
    a.add_argument("--path", required=True)
    a.add_argument("--admin-port", type=int, default=47990)
    a.add_argument("--header", action="append", default=[])
    sub.add_parser("serverinfo")
    pr = sub.add_parser("probe")
    pr.add_argument("--port", type=int, required=True)
    s = sub.add_parser("stream")
    s.add_argument("--app", required=True)
    s.add_argument("--until", required=True)
    s.add_argument("--max-secs", type=float, default=30)
    s.add_argument("--bitrate", type=int, default=10000)
    s.add_argument("--pinned", action="store_true")
    sub.add_parser("quit")
    t = sub.add_parser("launch-times")
    t.add_argument("--app-id", type=int, required=True)
    t.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    handlers = {"post-pin": cmd_post_pin, "admin-get": cmd_admin_get, "serverinfo": cmd_serverinfo, "probe": cmd_probe, "stream": cmd_stream,
                "quit": cmd_quit, "launch-times": cmd_launch_times}
    return driver.run_command(handlers, args)


if __name__ == "__main__":
    sys.exit(main())
