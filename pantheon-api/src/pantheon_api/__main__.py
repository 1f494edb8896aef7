"""``pantheon-api``: run the API (default) or create the first admin (``create-admin``)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from argon2 import PasswordHasher

from pantheon_api.settings import Settings
from pantheon_common.errors import ConfigurationError, PantheonError
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings

log = logging.getLogger("pantheon_api")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pantheon-api", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP API (default)")
    admin = sub.add_parser("create-admin", help="create an admin account")
    admin.add_argument("--username", required=True)
    admin.add_argument(
        "--password-file", type=Path, help="read the password from this file (else stdin)"
    )
    admin.add_argument(
        "--reset-password", action="store_true", help="set a new password if the user exists"
    )
    return parser


def _read_password(path: Path | None) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigurationError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _create_admin(settings: Settings, args: argparse.Namespace) -> int:
    from pantheon_api.adapters.store import FarmStore
    from pantheon_api.admin import create_admin
    from pantheon_common.mongo import mongo_client

    password = _read_password(args.password_file)
    client = mongo_client(settings.mongo_url, app_name="pantheon-api-cli")
    try:
        print(
            create_admin(
                FarmStore(client[settings.mongo_db]),
                PasswordHasher(),
                args.username,
                password,
                dev_mode=settings.dev_mode,
                replace_password=args.reset_password,
            )
        )
    finally:
        client.close()
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from pantheon_api.admin import bootstrap_admin_from_env
    from pantheon_api.runtime import build

    runtime = build(settings)
    password = settings.pantheon_admin_password
    try:
        outcome = bootstrap_admin_from_env(
            runtime.context.store,
            runtime.context.hasher,
            settings.pantheon_admin_username,
            password.get_secret_value() if password else None,
            dev_mode=settings.dev_mode,
        )
    except PantheonError:
        runtime.close()
        raise
    if outcome:
        log.info(outcome)
    try:
        uvicorn.run(
            runtime.app,
            host=settings.http_host,
            port=settings.pantheon_api_port,
            log_config=None,
            proxy_headers=False,
        )
    finally:
        runtime.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(Settings)
        configure_logging("pantheon-api", settings.log_level, settings.log_format)
        if args.command == "create-admin":
            return _create_admin(settings, args)
        return _serve(settings)
    except PantheonError as err:
        print(f"pantheon-api: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
