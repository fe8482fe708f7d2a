"""The OPC UA commissioning commands: ``heatd browse`` and ``heatd opcua cert``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _browse(args: argparse.Namespace) -> int:
    import asyncio  # here, not at import: every command line (check-config too) imports this

    from heatd.browse import browse
    from heatd.cli_site import load_for_device

    site = load_for_device(args.file, args.device)
    if site is None:
        return 1
    return asyncio.run(browse(site, args.device, args.node, sys.stdout,
                              snippet=args.snippet, max_depth=args.depth))


def _cert(args: argparse.Namespace) -> int:
    from heatd.opcua_cert import make_certificate

    try:
        files = make_certificate(args.uri, args.out, name=args.name, hosts=tuple(args.host),
                                 days=args.days, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"heatd opcua cert: {exc}", file=sys.stderr)
        return 1
    print(f"certificate {files.der} (DER, for the server's trusted folder) and {files.pem}\n"
          f"private key {files.key}\n"
          f"site file: certificate: {files.pem}, private_key: {files.key}, "
          f"application_uri: {args.uri}")
    return 0


def add_commands(commands: Any) -> None:
    browse = commands.add_parser(
        "browse", help="list an OPC UA device's variables: nsu= node id, type, access, value")
    browse.add_argument("file")
    browse.add_argument("device", metavar="DEVICE")
    browse.add_argument("node", metavar="NODE", nargs="?",
                        help="start below this node id (default: the Objects folder)")
    browse.add_argument("--snippet", type=Path, metavar="FILE",
                        help="write the variables as a points: section to FILE")
    browse.add_argument("--depth", type=int, default=8, help="levels to descend (default 8)")
    browse.set_defaults(handler=_browse)

    opcua = commands.add_parser("opcua", help="OPC UA tools")
    opcua_commands = opcua.add_subparsers(dest="opcua_command", required=True)
    cert = opcua_commands.add_parser(
        "cert", help="make heatd's client certificate and key with its application URI")
    cert.add_argument("--uri", required=True,
                      help="the application URI, e.g. urn:heatd:site1 (the site's "
                      "application_uri)")
    cert.add_argument("--out", type=Path, required=True, metavar="DIR")
    cert.add_argument("--name", default="heatd", help="file name stem (default heatd)")
    cert.add_argument("--host", action="append", default=[],
                      help="host name for the SubjectAltName (repeatable; default this host)")
    cert.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    cert.add_argument("--force", action="store_true", help="replace existing files")
    cert.set_defaults(handler=_cert)
