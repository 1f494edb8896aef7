"""``pantheon-farm``: check the farm layout, show it, and seed it into MongoDB."""

import argparse
import os
import sys
from pathlib import Path

from pantheon_common.errors import ConfigurationError, StoreUnavailable
from pantheon_common.farm import FarmLayout, default_layout_path, load_layout, seed_farm
from pantheon_common.mongo import mongo_client, ping
from pantheon_common.settings import redact_url


def _show(layout: FarmLayout) -> None:
    print(f"{len(layout.printers)} printers, {len(layout.racks)} racks, {len(layout.beds)} beds")
    for p in layout.printers:
        loc = p.where
        print(
            f"  printer {p.id:>3}  {p.model.value:<6} {p.driver:<6} {p.host}:{p.mqtt_port}"
            f"  serial {p.serial}  row {loc.row} col {loc.col}  plate {p.bed_type.value}"
        )
    by_type: dict[str, int] = {}
    for b in layout.beds:
        by_type[b.type.value] = by_type.get(b.type.value, 0) + 1
    print("  plates: " + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pantheon-farm`` console script."""
    parser = argparse.ArgumentParser(
        prog="pantheon-farm", description="Check, show and seed the farm layout (farm.yaml)."
    )
    parser.add_argument(
        "--layout",
        type=Path,
        default=None,
        help="layout file (default: $FARM_LAYOUT or ./farm.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate the layout file")
    sub.add_parser("show", help="print the printers, racks and plates")
    seed = sub.add_parser("seed", help="write the layout into MongoDB (idempotent)")
    seed.add_argument("--mongo-url", default=None, help="default: $MONGO_URL")
    seed.add_argument("--db", default=None, help="database (default: $MONGO_DB or pantheon)")
    args = parser.parse_args(argv)

    path = args.layout or default_layout_path()
    try:
        layout = load_layout(path)
        if args.command == "check":
            print(f"{path}: ok ({len(layout.printers)} printers, {len(layout.beds)} beds)")
        elif args.command == "show":
            _show(layout)
        else:
            url = args.mongo_url or os.environ.get("MONGO_URL")
            if not url:
                raise ConfigurationError("no MongoDB: pass --mongo-url or set MONGO_URL")
            db_name = args.db or os.environ.get("MONGO_DB", "pantheon")
            client = mongo_client(url, app_name="pantheon-farm")
            try:
                ping(client)
                created = seed_farm(client[db_name], layout)
            finally:
                client.close()
            print(
                f"seeded {redact_url(url)} database {db_name} from {path}: "
                + ", ".join(f"{n} new {what}" for what, n in created.items())
            )
    except (ConfigurationError, StoreUnavailable) as err:
        print(f"pantheon-farm: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
