#!/usr/bin/env python3
"""Drives the real moonlight-python client (0.3.0) against a direwolf server.

Used by bins/tests/interop.rs. Every protocol step goes through moonlight_python's own code
(MoonlightClient, NvHTTP, Identity, pairing.pair, server-info and app-list parsing); this file
only sequences the calls and prints one JSON object with what happened on stdout.

Commands (all take --host, --http-port and --client-dir, the client's identity directory):
  pair --pin PIN     pair (blocks until the PIN is entered on the server's PIN page);
                     saves the pinned server certificate as <client-dir>/server_cert.pem
  check [--asset-dir DIR]
                     HTTPS /serverinfo, /applist, and each app's /appasset (saved to DIR)
  launch --app NAME [--keep]
                     start a stream of NAME the way MoonlightClient.start_stream does, then
                     stop it; with --keep, leave it running on the server (the process exits
                     without /cancel, as a client that goes away does)
  unpaired           HTTPS /applist and /serverinfo with a client identity the server never saw
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import traceback
from pathlib import Path

import requests

from moonlight_python import MoonlightClient
from moonlight_python.discovery import connect_to_server
from moonlight_python.exceptions import HttpResponseError, MoonlightError, PairingError, WrongPinError
from moonlight_python.http_client import NvHTTP
from moonlight_python.identity import Identity

CERT_FILE = "server_cert.pem"


def emit(result: dict) -> None:
    print(json.dumps(result), flush=True)


def pinned_http(args: argparse.Namespace, identity: Identity) -> NvHTTP:
    """An NvHTTP client that learned the HTTPS port from HTTP /serverinfo, as clients do."""
    cert_path = Path(args.client_dir) / CERT_FILE
    pinned = cert_path.read_bytes() if cert_path.exists() else b""
    http = NvHTTP(args.host, identity, http_port=args.http_port, server_cert_pem=pinned)
    http.get_server_info()  # over HTTP; sets http.https_port from HttpsPort
    return http


def cmd_pair(args: argparse.Namespace) -> None:
    client = MoonlightClient(config_dir=args.client_dir)
    server = connect_to_server(args.host, client._identity, args.http_port)
    result = {"ok": False, "server_paired_before": server.paired, "https_port": server.https_port}
    try:
        client.pair(server, pin=args.pin)
    except WrongPinError as e:
        result.update(error="WrongPinError", message=str(e))
    except PairingError as e:
        result.update(error=type(e).__name__, message=str(e))
    except HttpResponseError as e:
        result.update(error="HttpResponseError", status_code=e.status_code, message=e.status_message)
    else:
        (Path(args.client_dir) / CERT_FILE).write_bytes(server.server_cert_pem)
        result.update(ok=True, server_cert_sha256=hashlib.sha256(server.server_cert_pem).hexdigest())
    emit(result)


def fetch_asset(http: NvHTTP, app_id: int) -> requests.Response:
    """GET /appasset with the client certificate.

    NvHTTP has no app-asset call and its _get returns text, which would mangle PNG bytes, so
    this issues the request with NvHTTP's own URL builder and TLS context (client certificate,
    no server verification), exactly as its _get does, and keeps the bytes.
    """
    from requests.adapters import HTTPAdapter

    ctx = http._make_ssl_context()

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *a, **kw):
            kw["ssl_context"] = ctx
            super().init_poolmanager(*a, **kw)

    session = requests.Session()
    session.mount("https://", _Adapter())
    url = http._build_url(http.base_url_https, "appasset", f"appid={app_id}&AssetType=2&AssetIdx=0")
    return session.get(url, timeout=10, verify=False)


def cmd_check(args: argparse.Namespace) -> None:
    identity = Identity(args.client_dir)
    http = pinned_http(args, identity)
    xml = http.open_https("serverinfo")
    NvHTTP.verify_response_status(xml)
    info = http.parse_server_info(xml)
    apps = http.get_app_list()
    result = {
        "ok": True,
        "serverinfo": {
            "hostname": info.hostname,
            "unique_id": info.unique_id,
            "paired": info.paired,
            "pair_status": NvHTTP.get_xml_string(xml, "PairStatus"),
            "https_port": info.https_port,
            "app_version": info.app_version,
            "state": info.state,
            "current_game": info.current_game,
        },
        "apps": [{"id": a.id, "name": a.name, "hdr": a.hdr_supported} for a in apps],
        "assets": {},
    }
    for app in apps:
        resp = fetch_asset(http, app.id)
        entry = {"http_status": resp.status_code, "content_type": resp.headers.get("Content-Type", ""),
                 "len": len(resp.content), "sha256": hashlib.sha256(resp.content).hexdigest()}
        if args.asset_dir:
            Path(args.asset_dir, f"{app.id}.bin").write_bytes(resp.content)
        result["assets"][str(app.id)] = entry
    emit(result)


def cmd_launch(args: argparse.Namespace) -> None:
    client = MoonlightClient(config_dir=args.client_dir)
    client.connect(args.host, args.http_port)  # paired already: no pairing happens here
    try:
        client.start_stream(app=args.app, width=1280, height=720, fps=60, ready_timeout=5)
    except HttpResponseError as e:
        emit({"ok": False, "error": "HttpResponseError", "status_code": e.status_code, "message": e.status_message})
    except MoonlightError as e:
        emit({"ok": False, "error": type(e).__name__, "message": str(e)})
    else:
        if args.keep:
            emit({"ok": True, "kept": True})
            os._exit(0)  # the stream's threads would keep the process alive
        client.stop_stream()
        emit({"ok": True})


def cmd_unpaired(args: argparse.Namespace) -> None:
    identity = Identity(args.client_dir)
    http = NvHTTP(args.host, identity, http_port=args.http_port)
    plain = http.parse_server_info(http.get_server_info())  # HTTP: learns HttpsPort
    result = {"ok": True, "http_pair_status": plain.paired}
    try:
        apps = http.get_app_list()
        result["applist"] = {"refused": False, "apps": len(apps)}
    except HttpResponseError as e:
        result["applist"] = {"refused": True, "error": "HttpResponseError", "status_code": e.status_code,
                             "message": e.status_message}
    except requests.RequestException as e:
        status = e.response.status_code if e.response is not None else None
        result["applist"] = {"refused": True, "error": type(e).__name__, "http_status": status}
    try:
        xml = http.open_https("serverinfo")
        result["serverinfo_xml"] = xml
    except requests.RequestException as e:
        status = e.response.status_code if e.response is not None else None
        result["serverinfo_http_status"] = status
        result["serverinfo_xml"] = e.response.text if e.response is not None else None
    emit(result)


def command_parser(doc: str, host_default: str | None = None):
    """The parser of a driver taking --host, --http-port and --client-dir, and its subcommands."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if host_default is None:
        parser.add_argument("--host", required=True)
    else:
        parser.add_argument("--host", default=host_default)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--client-dir", required=True)
    return parser, parser.add_subparsers(dest="command", required=True)


def run_command(handlers: dict, args: argparse.Namespace) -> int:
    """Runs the chosen subcommand; an unexpected exception is reported (key "unexpected") and fails."""
    try:
        handlers[args.command](args)
    except Exception as e:  # unexpected: report it and fail
        traceback.print_exc()
        emit({"ok": False, "error": type(e).__name__, "message": str(e), "unexpected": True})
        return 1
    return 0


def main() -> int:
    parser, sub = command_parser(__doc__, host_default="127.0.0.1")
    p = sub.add_parser("pair")
    p.add_argument("--pin", required=True)
    c = sub.add_parser("check")
    c.add_argument("--asset-dir")
    l = sub.add_parser("launch")
    l.add_argument("--app", required=True)
    l.add_argument("--keep", action="store_true")
    sub.add_parser("unpaired")
    args = parser.parse_args()
    return run_command({"pair": cmd_pair, "check": cmd_check, "launch": cmd_launch, "unpaired": cmd_unpaired}, args)


if __name__ == "__main__":
    sys.exit(main())
