"""Domain rules without any server: metadata parsing, archive checks, job and plate rules,
accounts and roles."""

from __future__ import annotations

import io
import zipfile

import pytest

from pantheon_api.domain.accounts import (
    hash_api_key,
    new_api_key,
    password_problem,
    role_allows,
)
from pantheon_api.domain.beds import BedRuleError, check_mark_clean, check_retire
from pantheon_api.domain.jobs import (
    JobRuleError,
    check_cancel,
    check_reorder,
    check_retry,
    check_target,
    choose_bed_type,
    file_in_use,
)
from pantheon_api.domain.metadata import (
    ArchiveLimits,
    InvalidPackage,
    UnsafeArchive,
    bed_type_from_text,
    check_archive,
    parse_duration,
    parse_gcode_text,
    printer_model_from_text,
    read_metadata,
)
from pantheon_common.auth import Role
from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.printer import PrinterModel
from pantheon_contracts.store import JobStatus

# -- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h 2m 3s", 3723), ("2m 0s", 120), ("1d 1h", 90000), ("95", 95), ("soon", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("Bambu Lab P1S", PrinterModel.P1S),
        ("C12", PrinterModel.P1S),
        ("BL-P001", PrinterModel.X1C),
        ("Bambu Lab X1 Carbon", PrinterModel.X1C),
        ("Bambu Lab A1 mini", PrinterModel.A1MINI),
        ("N2S", PrinterModel.A1),
        ("Prusa MK4", None),
    ],
)
def test_printer_model_names(text: str, model: PrinterModel | None) -> None:
    assert printer_model_from_text(text) == model


@pytest.mark.parametrize(
    ("text", "bed"),
    [
        ("Textured PEI Plate", BedType.TEXTURED_PEI),
        ("textured_plate", BedType.TEXTURED_PEI),
        ("hot_plate", BedType.SMOOTH_PEI),
        ("High Temp Plate", BedType.SMOOTH_PEI),
        ("Cool Plate", BedType.COOL_PLATE),
        ("eng_plate", BedType.ENGINEERING),
        ("cool_plate", BedType.COOL_PLATE),
        ("glass", None),
    ],
)
def test_bed_type_names(text: str, bed: BedType | None) -> None:
    assert bed_type_from_text(text) == bed


def test_bambu_header() -> None:
    meta = parse_gcode_text(
        "; HEADER_BLOCK_START\n; model printing time: 1h 0m 0s; total estimated time: 1h 5m 0s\n"
        "; total filament weight [g] : 21.37\n; printer_model: Bambu Lab X1 Carbon\n"
        "; curr_bed_type = Engineering Plate\n; HEADER_BLOCK_END\nG28\n"
    )
    assert meta.estimated_s == 3900
    assert meta.filament_g == 21.37
    assert meta.printer_model == PrinterModel.X1C
    assert meta.bed_type == BedType.ENGINEERING


def test_prusaslicer_trailer_sums_extruders() -> None:
    meta = parse_gcode_text(
        "G1 X1\n; filament used [g] = 10.5, 2.25\n"
        "; estimated printing time (normal mode) = 2h 3m 4s\n; printer_model = P1S\n"
    )
    assert meta.filament_g == 12.75
    assert meta.estimated_s == 7384
    assert meta.printer_model == PrinterModel.P1S


def test_plain_gcode_head_and_tail_are_read() -> None:
    body = (
        b"; printer_model = Bambu Lab A1\n" + b"G1 X1\n" * 100_000 + b"; filament used [g] = 3.5\n"
    )
    meta = read_metadata("x.gcode", io.BytesIO(body), len(body), ArchiveLimits())
    assert meta.printer_model == PrinterModel.A1
    assert meta.filament_g == 3.5


def test_binary_content_is_not_gcode() -> None:
    with pytest.raises(InvalidPackage):
        read_metadata("x.gcode", io.BytesIO(b"\x00\x01" * 10), 20, ArchiveLimits())


def _info(name: str, size: int = 10, compressed: int = 10) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.file_size = size
    info.compress_size = compressed
    return info


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/abs/x", "C:/x", "a\\b", ""],
)
def test_hostile_member_names(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        check_archive([_info(name)], ArchiveLimits())


def test_ratio_and_budget_limits() -> None:
    limits = ArchiveLimits(max_uncompressed_bytes=300 * 2**20, max_ratio=100, max_members=3)
    check_archive([_info("a", 2**20 * 10, 2**20)], limits)  # 10x is fine
    with pytest.raises(UnsafeArchive, match="expands"):
        check_archive([_info("a", 2**20 * 200, 2**20)], limits)
    with pytest.raises(UnsafeArchive, match="uncompressed"):
        check_archive(
            [_info("a", 160 * 2**20, 159 * 2**20), _info("b", 160 * 2**20, 159 * 2**20)], limits
        )
    with pytest.raises(UnsafeArchive, match="members"):
        check_archive([_info(str(i)) for i in range(4)], limits)
    check_archive([_info("zeros", 1000, 1)], limits)  # tiny members are not ratio-checked


def test_multi_plate_3mf() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Metadata/plate_1.gcode", "; total estimated time: 10m 0s\nG28\n")
        zf.writestr("Metadata/plate_2.gcode", "G28\n")
        zf.writestr(
            "Metadata/slice_info.config",
            '<config><plate><metadata key="index" value="1"/>'
            '<metadata key="prediction" value="600"/><metadata key="weight" value="5"/></plate>'
            '<plate><metadata key="index" value="2"/><metadata key="prediction" value="300"/>'
            '<metadata key="weight" value="2.5"/></plate></config>',
        )
    meta = read_metadata("p.gcode.3mf", buf, len(buf.getvalue()), ArchiveLimits())
    assert meta.plate_count == 2
    assert meta.estimated_s == 900
    assert meta.filament_g == 7.5


# -- jobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cancel", "retry", "reorder"),
    [
        (JobStatus.QUEUED, True, False, True),
        (JobStatus.ASSIGNED, False, False, False),
        (JobStatus.UPLOADING, False, False, False),
        (JobStatus.PRINTING, False, False, False),
        (JobStatus.FINISHED, False, False, False),
        (JobStatus.FAILED, True, True, False),
        (JobStatus.CANCELLED, False, True, False),
    ],
)
def test_job_actions_per_status(
    status: JobStatus, cancel: bool, retry: bool, reorder: bool
) -> None:
    for check, allowed in ((check_cancel, cancel), (check_retry, retry), (check_reorder, reorder)):
        if allowed:
            check(status)
        else:
            with pytest.raises(JobRuleError):
                check(status)


def test_open_jobs_keep_their_file() -> None:
    assert file_in_use([JobStatus.FINISHED, JobStatus.QUEUED])
    assert file_in_use([JobStatus.PRINTING])
    assert not file_in_use([JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED])


def test_targets() -> None:
    t = check_target(None, None, None, PrinterModel.P1S)
    assert (t.printer_id, t.model) == (None, PrinterModel.P1S)  # anywhere -> the file's model
    assert check_target(14, None, PrinterModel.P1S, PrinterModel.P1S).printer_id == 14
    with pytest.raises(JobRuleError, match="sliced for"):
        check_target(14, None, PrinterModel.X1C, PrinterModel.P1S)
    with pytest.raises(JobRuleError, match="not in the farm"):
        check_target(99, None, None, None)
    with pytest.raises(JobRuleError, match="not a"):
        check_target(14, PrinterModel.A1, PrinterModel.P1S, None)


def test_bed_type_choice() -> None:
    assert choose_bed_type(None, BedType.COOL_PLATE) == BedType.COOL_PLATE
    assert choose_bed_type(BedType.ENGINEERING, None) == BedType.ENGINEERING
    with pytest.raises(JobRuleError):
        choose_bed_type(BedType.ENGINEERING, BedType.COOL_PLATE)
    with pytest.raises(JobRuleError, match="required"):
        choose_bed_type(None, None)


# -- beds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "printer_id", "ok"),
    [
        (BedState.WITH_PART, None, True),
        (BedState.DIRTY, None, True),
        (BedState.CLEAN, None, True),
        (BedState.WITH_PART, 14, False),
        (BedState.IN_PRINTER, 14, False),
        (BedState.RETIRED, None, False),
    ],
)
def test_mark_clean(state: BedState, printer_id: int | None, ok: bool) -> None:
    if ok:
        check_mark_clean(state, printer_id)
    else:
        with pytest.raises(BedRuleError):
            check_mark_clean(state, printer_id)


def test_retire_never_from_a_printer() -> None:
    check_retire(BedState.DIRTY, None)
    with pytest.raises(BedRuleError):
        check_retire(BedState.WITH_PART, 14)


# -- accounts and roles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.VIEWER, Role.VIEWER, True),
    ],
)
def test_role_matrix(role: Role, required: Role, allowed: bool) -> None:
    assert role_allows(role, required) is allowed


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("changeme", False),
        ("admin", False),
        ("short", False),
        ("aaaaaaaaaaaaaa", False),
        ("correct horse battery", True),
    ],
)
def test_password_policy(password: str, ok: bool) -> None:
    assert (password_problem(password) is None) is ok


def test_api_keys_are_random_and_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b
    assert a.startswith("pk_")
    assert len(a) > 40
    assert hash_api_key(a) == hash_api_key(a) != hash_api_key(b)
    assert len(hash_api_key(a)) == 64
