"""pushall rate limits, the silence watchdog and the 3MF wrapper."""

import io
import zipfile

import pytest

from pantheon_contracts.printer import PrinterModel
from printer_service.domain.liveness import (
    PushallPolicy,
    PushallReason,
    SilenceAction,
    SilenceWatchdog,
)
from printer_service.domain.package import (
    MD5_ENTRY,
    PLATE_ENTRY,
    PackageError,
    plate_md5,
    prepare,
    project_md5,
)


def test_pushall_never_more_often_than_every_3_s() -> None:
    policy = PushallPolicy(PrinterModel.X1C)
    assert policy.allowed(PushallReason.CONNECT, 100.0)
    policy.sent(100.0)
    for reason in PushallReason:
        assert not policy.allowed(reason, 102.9)
        assert policy.allowed(reason, 103.0)


def test_p1_pushall_after_silence_only_every_5_min_but_connect_and_unknown_pass() -> None:
    policy = PushallPolicy(PrinterModel.P1S)
    policy.sent(0.0)
    assert not policy.allowed(PushallReason.SILENCE, 299.0)
    assert policy.allowed(PushallReason.SILENCE, 300.0)
    assert policy.allowed(PushallReason.CONNECT, 3.0)
    assert policy.allowed(PushallReason.UNKNOWN, 3.0)


@pytest.mark.parametrize(
    ("quiet", "last_start", "action"),
    [
        (5.0, None, SilenceAction.NONE),
        (20.0, None, SilenceAction.PUSH_START),
        (25.0, 15.0, SilenceAction.NONE),  # pushing.start at most every 15 s
        (40.0, 10.0, SilenceAction.PUSH_START),
        (60.0, 50.0, SilenceAction.RECONNECT),
    ],
)
def test_silence_watchdog(quiet: float, last_start: float | None, action: SilenceAction) -> None:
    dog = SilenceWatchdog(silence_timeout_s=60.0, push_start_after_s=20.0)
    dog.last_push_start = last_start
    assert dog.check(now=quiet, last_message=0.0) == action


def test_plain_gcode_is_wrapped_with_an_uppercase_md5() -> None:
    gcode = b"; HEADER\nG28\nG1 X10\n"
    name, package, md5 = prepare("cube.gcode", gcode)
    assert name == "cube.gcode.3mf"
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert archive.read(PLATE_ENTRY) == gcode
        assert archive.read(MD5_ENTRY).decode() == md5
    assert md5 == plate_md5(gcode)
    assert md5 == md5.upper()
    assert len(md5) == 32


def test_a_project_is_sent_as_is_with_its_md5_or_none() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(PLATE_ENTRY, b"G28\n")
    name, package, md5 = prepare("part.gcode.3mf", buffer.getvalue())
    assert (name, package, md5) == ("part.gcode.3mf", buffer.getvalue(), "")


def test_a_broken_project_is_refused() -> None:
    with pytest.raises(PackageError):
        project_md5(b"not a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Metadata/plate_2.gcode", b"G28\n")
    with pytest.raises(PackageError, match="plate_1"):
        project_md5(buffer.getvalue())
