"""The ``ready`` body is strict ASCII decimal; every rejection carries a reason."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pantheon_contracts import ContractError, ReadyNotification, format_ready_body, parse_ready_body
from pantheon_contracts.ready import HomingRequest


@pytest.mark.parametrize(
    ("body", "printer_id"),
    [
        (b"14", 14),
        (b" 14\n", 14),  # typed in a shell or the RabbitMQ UI with a newline
        (b"\t41\r\n", 41),
        (b"1", 1),
        (b"999999", 999_999),
    ],
)
def test_valid_bodies(body: bytes, printer_id: int) -> None:
    assert parse_ready_body(body) == printer_id


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"14.0", "not a printer id"),
        (b"-1", "not a printer id"),
        (b"+14", "not a printer id"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\xff\xfe14", "not UTF-8"),
        (b"1 4", "not a printer id"),
        (b"0x0e", "not a printer id"),
        (b"14a", "not a printer id"),
        ("١٤".encode(), "not a printer id"),  # Arabic-Indic digits: not ASCII
        (b"0", "out of range"),
        (b"014", "leading zero"),
        (b"1000000", "out of range"),
        (b'{"printer_id": 14}', "not a printer id"),
        (b"1" * 200, "bytes"),
    ],
)
def test_rejected_bodies_say_why(body: bytes, reason_part: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_ready_body(body)
    assert reason_part in info.value.reason


@given(st.integers(min_value=1, max_value=999_999))
def test_format_parse_round_trip(printer_id: int) -> None:
    body = format_ready_body(printer_id)
    assert body == str(printer_id).encode()
    assert parse_ready_body(body) == printer_id


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_contract_error(body: bytes) -> None:
    try:
        printer_id = parse_ready_body(body)
    except ContractError as err:
        assert err.reason
    else:
        assert format_ready_body(printer_id) == body.strip()


@pytest.mark.parametrize("bad", [0, -1, True, 1_000_000])
def test_format_refuses_bad_ids(bad: int) -> None:
    with pytest.raises(ContractError):
        format_ready_body(bad)


def test_notification_from_delivery_keeps_print_id() -> None:
    note = ReadyNotification.from_delivery(b"14", message_id="print-abc")
    assert (note.printer_id, note.print_id) == (14, "print-abc")
    hand_typed = ReadyNotification.from_delivery(b"14\n", message_id="")
    assert hand_typed.print_id is None


def test_homing_accepts_any_body() -> None:
    assert HomingRequest.from_delivery(b"\xff anything").note.endswith("anything")
    assert HomingRequest.from_delivery(b"", message_id="m1").message_id == "m1"
