"""``pantheon-infra``: start, inspect and stop the real servers used by tests and native runs.

Subcommands: ``up`` (make every server answer), ``down`` (stop the servers the harness owns),
``status`` (what answers where, starts nothing) and ``env`` (print the connection settings for
``eval "$(pantheon-infra env)"``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pantheon_devtools.infra import (
    ENV_FILE,
    Endpoints,
    InfraError,
    ServiceStatus,
    default_run_dir,
    ensure_infra,
    infra_status,
    secrets_path,
    stop_owned,
)

_DESCRIPTION = """\
Make the real infrastructure servers available without Docker:
  RabbitMQ   the machine's rabbitmq-server (system service) + management UI, user 'pantheon'
  MariaDB    the machine's MariaDB (system service), user 'pantheon'
  Mosquitto  an instance owned by the harness (persistence on every change)
  MongoDB    $MONGO_URL if set, else an owned nx-27017 (MongoDB wire protocol on SQLite)
Missing Debian packages are installed (as root) and stopped servers are started.
Passwords are generated once into <run-dir>/secrets.env (or $PANTHEON_INFRA_SECRETS_FILE);
settings go to <run-dir>/infra.env. Run dir: --run-dir, $PANTHEON_RUN_DIR or <repo>/.run.
MongoDB: set MONGO_URL to use a real MongoDB instead of nx-27017.
Ports: PANTHEON_INFRA_{AMQP,RABBITMQ_MANAGEMENT,MYSQL,MQTT,MONGO}_PORT.
"""


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def _status_rows(statuses: list[ServiceStatus]) -> list[list[str]]:
    rows = [["SERVICE", "ADDRESS", "STATE", "OWNER", "DETAILS"]]
    for status in statuses:
        rows.append(
            [
                status.name,
                status.address,
                "up" if status.answering else "DOWN",
                status.owner,
                status.details,
            ]
        )
    return rows


def _cmd_up(run_dir: Path, install: bool) -> int:
    started = time.monotonic()
    endpoints = ensure_infra(run_dir, install=install)
    elapsed = time.monotonic() - started
    print(_table(_status_rows(infra_status(run_dir))))
    print()
    print(
        f"RabbitMQ UI:  {endpoints.rabbitmq_management_url}  "
        f"(user {endpoints.rabbitmq_user}, password in {secrets_path(run_dir)})"
    )
    print(f'Settings:     {run_dir / ENV_FILE}   (eval "$(pantheon-infra env)")')
    print(f"Ready in {elapsed:.1f} s.")
    return 0


def _cmd_down(run_dir: Path) -> int:
    stopped = stop_owned(run_dir)
    if stopped:
        print("stopped: " + ", ".join(stopped))
    else:
        print("nothing owned by the harness was running")
    print("system services (RabbitMQ, MariaDB) are left running")
    return 0


def _cmd_status(run_dir: Path) -> int:
    statuses = infra_status(run_dir)
    print(_table(_status_rows(statuses)))
    return 0 if all(status.answering for status in statuses) else 3


def _env_lines(endpoints: Endpoints, plain: bool) -> list[str]:
    if plain:
        return [f"{key}={value}" for key, value in endpoints.as_env().items()]
    return [f"export {key}={shlex.quote(value)}" for key, value in endpoints.as_env().items()]


def _cmd_env(run_dir: Path, install: bool, plain: bool) -> int:
    endpoints = ensure_infra(run_dir, install=install)
    print("\n".join(_env_lines(endpoints, plain)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pantheon-infra``."""
    parser = argparse.ArgumentParser(
        prog="pantheon-infra",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="state directory (default: $PANTHEON_RUN_DIR or <repo>/.run)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up", help="install/start whatever is missing, wait until ready, print what runs where"
    )
    up.add_argument("--no-install", action="store_true", help="never run apt-get")
    sub.add_parser(
        "down",
        help="stop the servers the harness owns (Mosquitto, nx-27017); "
        "system services keep running",
    )
    sub.add_parser(
        "status",
        help="show what answers where without starting anything "
        "(exit code 3 when something is down)",
    )
    env = sub.add_parser(
        "env",
        help="ensure the servers, then print the settings as "
        "`export KEY=VALUE` lines for eval (logs go to stderr)",
    )
    env.add_argument("--plain", action="store_true", help="print KEY=VALUE lines (dotenv style)")
    env.add_argument("--no-install", action="store_true", help="never run apt-get")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pantheon-infra`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    for chatty in ("httpx", "pika"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    run_dir: Path = (args.run_dir or default_run_dir()).resolve()
    try:
        if args.command == "up":
            return _cmd_up(run_dir, install=not args.no_install)
        if args.command == "down":
            return _cmd_down(run_dir)
        if args.command == "status":
            return _cmd_status(run_dir)
        return _cmd_env(run_dir, install=not args.no_install, plain=args.plain)
    except InfraError as exc:
        print(f"pantheon-infra: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pantheon-infra: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
