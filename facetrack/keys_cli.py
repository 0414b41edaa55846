"""`facetrack keys new NAME --dir DIR` and `facetrack keys list DIR`: CURVE keys of the remote-detector link.

    facetrack keys new board --dir keys          # on the board: keys/board.key, keys/board.key_secret
    facetrack keys new gpu1 --dir keys           # on each detector host: its own pair
    facetrack keys list keys/detectors           # the public keys in a directory (what the board serves)

NAME.key is the public key (give it to the other side), NAME.key_secret the secret one (mode
0600, never leaves its host); a missing DIR is made 0700. The exchange: board.key goes to every detector
host (its detector.remote_board_key), each detector's NAME.key into the board's
detector.remote_authorized_dir; a key file is never overwritten (remove it first).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zmq.auth

from common.curve import create_keys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facetrack keys", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    sub = p.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="make NAME.key and NAME.key_secret")
    new.add_argument("name")
    new.add_argument("--dir", type=Path, default=Path("keys"), help="where to write them (default: keys)")
    ls = sub.add_parser("list", help="the public keys of the NAME.key files in a directory")
    ls.add_argument("dir", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.action == "new":
        if not args.name or "/" in args.name or args.name.startswith("."):
            print(f"facetrack keys: {args.name!r} cannot be a key name", file=sys.stderr)
            return 2
        try:
            public, secret = create_keys(args.dir, args.name)
        except OSError as exc:
            print(f"facetrack keys: {exc}", file=sys.stderr)
            return 1
        print(f"public key {public} (copy it to the other side)\nsecret key {secret} (mode 0600; keep it here)")
        return 0
    if not args.dir.is_dir():
        print(f"facetrack keys: {args.dir}: no such directory", file=sys.stderr)
        return 1
    for file in sorted(args.dir.glob("*.key")):
        try:
            print(f"{file.name}\t{zmq.auth.load_certificate(file)[0].decode()}")
        except (OSError, ValueError) as exc:
            print(f"{file.name}\tnot a key file ({exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
