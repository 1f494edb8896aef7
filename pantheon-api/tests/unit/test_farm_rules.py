"""The farm layout's rules: printer-service addresses (ids never become bad ports), plate homes,
and what a 3MF package may contain (no symlinks or special entries, nothing empty)."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from pantheon_api.domain.farm import (
    HomeSlotRefused,
    NoServiceAddress,
    UnknownPrinter,
    check_home_slot,
    printer_service_address,
    url_problem,
)
from pantheon_api.domain.metadata import (
    ArchiveLimits,
    InvalidPackage,
    UnsafeArchive,
    read_metadata,
)
from pantheon_common.farm import FarmLayout, load_layout

ROOT = Path(__file__).resolve().parents[3]
LAYOUT = FarmLayout.model_validate(
    {
        "printers": [
            {"id": 14, "model": "P1S", "host": "127.0.0.14", "serial": "01P00A000000014"},
            {"id": 999, "model": "P1S", "host": "127.0.0.99", "serial": "01P00A000000999"},
            {"id": 1000, "model": "P1S", "host": "127.0.0.100", "serial": "01P00A000001000"},
        ],
        "racks": [{"id": "A", "row": 1.5, "slots": 4}, {"id": "B", "row": 3.5, "slots": 2}],
        "beds": [{"id": 801, "type": "textured_pei", "home": {"rack": "A", "slot": 1}}],
    }
)
NATIVE = "http://127.0.0.1:50{id:03d}"  # pantheon-run's template: printer 14 -> port 50014


@pytest.mark.parametrize(
    ("template", "printer_id", "url"),
    [
        (NATIVE, 14, "http://127.0.0.1:50014"),
        (NATIVE, 999, "http://127.0.0.1:50999"),
        ("http://printer-service-{printer_id}:8080", 14, "http://printer-service-14:8080"),
        ("http://127.0.0.1:{port}", 14, "http://127.0.0.1:50014"),
    ],
)
def test_printers_of_the_layout_get_their_service_url(
    template: str, printer_id: int, url: str
) -> None:
    assert printer_service_address(LAYOUT, template, printer_id) == url


@pytest.mark.parametrize("printer_id", [2, 13, 999_999, 1_000_000, 2**31 - 1])
def test_ids_that_are_not_printers_of_the_layout_have_no_service(printer_id: int) -> None:
    """Checked before any URL is built: 999999 would have been port 50999999."""
    with pytest.raises(UnknownPrinter, match=f"printer {printer_id} not found"):
        printer_service_address(LAYOUT, NATIVE, printer_id)


def test_a_layout_printer_whose_port_would_pass_65535_has_no_address() -> None:
    with pytest.raises(NoServiceAddress, match=r"port 501000 is outside 1\.\.65535"):
        printer_service_address(LAYOUT, NATIVE, 1000)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:50014", None),
        ("https://printer-service-14", None),
        ("http://[::1]:65535/x", None),
        ("http://127.0.0.1:50999999", "port 50999999 is outside 1..65535"),
        ("http://127.0.0.1:0", "port 0 is outside 1..65535"),
        ("http://[::1]:70000", "port 70000 is outside 1..65535"),
        ("ftp://127.0.0.1", "scheme 'ftp' is not http(s)"),
        ("http://:8080", "no host"),
    ],
)
def test_url_problems(url: str, problem: str | None) -> None:
    assert url_problem(url) == problem


def test_the_seed_layout_has_a_service_for_each_of_its_printers() -> None:
    layout = load_layout(ROOT / "farm.yaml")
    for printer_id in layout.printer_ids:
        assert printer_service_address(layout, NATIVE, printer_id).endswith(
            f":{50000 + printer_id}"
        )


@pytest.mark.parametrize(
    ("rack", "slot", "taken_by", "reason"),
    [
        ("A", 2, [], None),
        ("B", 2, [], None),
        ("A", 1, [], None),  # plate 801's own home (a PATCH that keeps it)
        ("Z", 1, [], "rack 'Z' is not in the farm layout (racks: A, B)"),
        ("a", 2, [], "rack 'a' is not in the farm layout"),
        ("A", 5, [], "rack A has slots 1..4; there is no slot 5"),
        ("B", 0, [], "rack B has slots 1..2; there is no slot 0"),
        ("A", 3, [805], "slot A/3 is the home of plate 805"),
        ("A", 3, [801], None),  # only itself
    ],
)
def test_plate_homes_are_free_slots_of_the_layout(
    rack: str, slot: int, taken_by: list[int], reason: str | None
) -> None:
    if reason is None:
        check_home_slot(LAYOUT, 801, rack, slot, taken_by)
    else:
        with pytest.raises(HomeSlotRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
            check_home_slot(LAYOUT, 801, rack, slot, taken_by)


def test_a_layout_plates_home_is_taken_even_without_its_document() -> None:
    with pytest.raises(HomeSlotRefused, match="slot A/1 is the home of plate 801"):
        check_home_slot(LAYOUT, 900, "A", 1, [])


# -- packages ----------------------------------------------------------------------------------


def _package(kind: int, name: str = "Metadata/plate_1.gcode", data: bytes = b"G28\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Metadata/slice_info.config", "<config/>")
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix: external_attr's high 16 bits are st_mode
        info.external_attr = (kind | 0o644) << 16
        zf.writestr(info, data)
    return buf.getvalue()


def _read(name: str, data: bytes) -> object:
    return read_metadata(name, io.BytesIO(data), len(data), ArchiveLimits())


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (stat.S_IFLNK, "a symbolic link"),
        (stat.S_IFIFO, "a FIFO"),
        (stat.S_IFCHR, "a character device"),
        (stat.S_IFBLK, "a block device"),
        (stat.S_IFSOCK, "a socket"),
    ],
)
def test_a_plate_entry_that_is_not_a_regular_file_is_refused(kind: int, what: str) -> None:
    data = _package(kind, data=b"/etc/passwd")  # a symlink's content is its target
    with pytest.raises(UnsafeArchive, match=f"'Metadata/plate_1.gcode' is {what}"):
        _read("part.gcode.3mf", data)


def test_a_special_entry_anywhere_in_the_package_is_refused() -> None:
    data = _package(stat.S_IFLNK, name="Metadata/thumbnail.png", data=b"/root/.ssh/id_rsa")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        _read("part.gcode.3mf", data)


def test_a_plate_entry_that_is_a_directory_is_refused() -> None:
    data = _package(stat.S_IFDIR, data=b"")
    with pytest.raises(UnsafeArchive, match="is a directory"):
        _read("part.gcode.3mf", data)


def test_regular_entries_with_unix_modes_are_read() -> None:
    data = _package(stat.S_IFREG, data=b"; total estimated time: 1h\nG28\n")
    meta = _read("part.gcode.3mf", data)
    assert getattr(meta, "estimated_s", None) == 3600


@pytest.mark.parametrize("name", ["empty.gcode", "empty.bgcode", "empty.gcode.3mf"])
def test_an_empty_file_is_refused(name: str) -> None:
    with pytest.raises(InvalidPackage, match=r"empty \(0 bytes\)"):
        _read(name, b"")
