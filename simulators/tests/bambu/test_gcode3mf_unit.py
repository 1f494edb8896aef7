"""Reading print packages and G-code headers as the printer does."""

import hashlib
from pathlib import Path

import pytest

from pantheon_sim.bambu.gcode3mf import (
    StorageJobResolver,
    build_gcode_3mf,
    parse_duration,
    parse_gcode,
    resolve_url,
    sample_gcode,
)
from pantheon_sim.bambu.printer import ErrorCode, JobError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m 0s", 120), ("1h 2m 3s", 3723), ("1d 1h", 90000), ("45s", 45), ("", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("header", "estimate", "layers"),
    [
        (
            "; model printing time: 5m 2s; total estimated time: 10m 0s\n; total layer number: 7",
            600,
            7,
        ),
        (
            "; estimated printing time (normal mode) = 1h 0m 0s\n;LAYER_CHANGE\n;LAYER_CHANGE",
            3600,
            2,
        ),
        ("G1 X0\nM73 L1\nM73 L2\nM73 L3", None, 3),
    ],
)
def test_parse_gcode_header(header: str, estimate: float | None, layers: int) -> None:
    info = parse_gcode(header.encode())
    assert info.estimated_s == estimate
    assert info.total_layers == layers
    assert info.md5 == hashlib.md5(header.encode(), usedforsecurity=False).hexdigest().upper()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp:///a.gcode.3mf", "a.gcode.3mf"),
        ("ftp://a.gcode.3mf", "a.gcode.3mf"),
        ("file:///sdcard/sub/a.gcode.3mf", "sub/a.gcode.3mf"),
        ("file:///mnt/sdcard/sub/a.gcode.3mf", "sub/a.gcode.3mf"),
    ],
)
def test_url_forms_resolve(tmp_path: Path, url: str, expected: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.gcode.3mf").write_bytes(b"x")
    (tmp_path / "sub" / "a.gcode.3mf").write_bytes(b"x")
    assert resolve_url(url, "", tmp_path, folder_urls_fail=True) == tmp_path / expected


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://a.gcode.3mf", ErrorCode.UNSUPPORTED_PATH),
        ("ftp:///../etc/passwd", ErrorCode.UNSUPPORTED_PATH),
        ("ftp:///sub/a.gcode.3mf", ErrorCode.SD_EXCEPTION),
        ("ftp:///missing.gcode.3mf", ErrorCode.FILE_NOT_AVAILABLE),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, code: int) -> None:
    with pytest.raises(JobError) as caught:
        resolve_url(url, "", tmp_path, folder_urls_fail=True)
    assert caught.value.code == code


def test_slice_info_prediction_is_used_without_header_estimate(tmp_path: Path) -> None:
    gcode = sample_gcode(layers=4, estimate=None)
    (tmp_path / "p.gcode.3mf").write_bytes(build_gcode_3mf(gcode, prediction_s=4321))
    job = StorageJobResolver(tmp_path, folder_urls_fail=True, seconds_per_line=0.04)(
        {"command": "project_file", "url": "ftp:///p.gcode.3mf", "param": "Metadata/plate_1.gcode"}
    )
    assert job.estimated_s == 4321
    assert job.total_layers == 4


def test_line_count_is_the_last_resort(tmp_path: Path) -> None:
    gcode = b"G1 X1\n" * 1000
    (tmp_path / "p.gcode.3mf").write_bytes(build_gcode_3mf(gcode))
    job = StorageJobResolver(tmp_path, folder_urls_fail=True, seconds_per_line=0.5)(
        {"command": "project_file", "url": "ftp:///p.gcode.3mf", "param": "Metadata/plate_1.gcode"}
    )
    assert job.estimated_s == 500


def test_md5_in_the_command_is_checked(tmp_path: Path) -> None:
    gcode = sample_gcode()
    (tmp_path / "p.gcode.3mf").write_bytes(build_gcode_3mf(gcode, with_md5=False))
    resolver = StorageJobResolver(tmp_path, folder_urls_fail=True, seconds_per_line=0.04)
    base = {
        "command": "project_file",
        "url": "ftp:///p.gcode.3mf",
        "param": "Metadata/plate_1.gcode",
    }
    good = hashlib.md5(gcode, usedforsecurity=False).hexdigest()
    assert resolver({**base, "md5": good}).total_layers == 10
    with pytest.raises(JobError) as caught:
        resolver({**base, "md5": "0" * 32})
    assert caught.value.code == ErrorCode.CANNOT_PARSE
