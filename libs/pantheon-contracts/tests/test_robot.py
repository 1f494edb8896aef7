"""Robot jobs match the seed JSON of architecture.md 3.2 byte for byte."""

import json

import pytest

from pantheon_contracts import ContractError, RobotJob, RobotJobKind, RobotState, RobotStatus

# The literal seed payloads of architecture.md 3.2: the real robot parses exactly these.
SEED_TAKE = (
    '{"printer_id":14,"bed_id":801,"take_from_printer":true,'
    '"load_next_bed_without_homing":true,"open_doors":["printer14"]}'
)
SEED_REPLACE = (
    '{"printer_id":14,"bed_id":801,"take_from_printer":false,'
    '"load_next_bed_without_homing":true,"open_doors":["printer14"]}'
)
SEED_HOMING = (
    '{"printer_id":null,"bed_id":null,"take_from_printer":false,'
    '"load_next_bed_without_homing":false,"open_doors":[]}'
)
SEED_STATUS = '{"status": "available"}'


def test_take_is_the_seed_json() -> None:
    assert RobotJob.take(14, 801).to_json().decode() == SEED_TAKE


def test_replace_is_the_seed_json() -> None:
    assert RobotJob.replace(14, 801).to_json().decode() == SEED_REPLACE


def test_homing_is_the_seed_json() -> None:
    assert RobotJob.homing().to_json().decode() == SEED_HOMING


def test_key_order_is_the_seed_order() -> None:
    keys = list(json.loads(RobotJob.take(21, 805).to_json()))
    assert keys == [
        "printer_id",
        "bed_id",
        "take_from_printer",
        "load_next_bed_without_homing",
        "open_doors",
    ]


def test_job_id_extension_is_appended_last() -> None:
    payload = json.loads(RobotJob.take(14, 801, job_id="t-1").to_json())
    assert list(payload)[-1] == "job_id"
    assert payload["job_id"] == "t-1"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(SEED_TAKE, RobotJobKind.TAKE), (SEED_REPLACE, RobotJobKind.REPLACE), (SEED_HOMING, "homing")],
)
def test_seed_payloads_parse_and_round_trip(payload: str, kind: str) -> None:
    job = RobotJob.parse(payload)
    assert job.kind == kind
    assert job.to_json().decode() == payload


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        '{"printer_id":14}',
        # a homing with a printer door is physically contradictory
        '{"printer_id":null,"bed_id":null,"take_from_printer":false,'
        '"load_next_bed_without_homing":false,"open_doors":["printer14"]}',
        # a take without a plate
        '{"printer_id":14,"bed_id":null,"take_from_printer":true,'
        '"load_next_bed_without_homing":true,"open_doors":["printer14"]}',
        # strings where the robot expects numbers and booleans
        '{"printer_id":"14","bed_id":801,"take_from_printer":true,'
        '"load_next_bed_without_homing":true,"open_doors":["printer14"]}',
        '{"printer_id":14,"bed_id":801,"take_from_printer":1,'
        '"load_next_bed_without_homing":true,"open_doors":["printer14"]}',
        SEED_TAKE[:-1] + ',"speed":3}',  # unknown key
    ],
)
def test_invalid_jobs_raise_contract_error(payload: str) -> None:
    with pytest.raises(ContractError) as info:
        RobotJob.parse(payload)
    assert info.value.reason.startswith("robot job")


def test_status_seed_round_trip() -> None:
    status = RobotStatus.parse(SEED_STATUS)
    assert status.state is RobotState.AVAILABLE
    assert status.to_json().decode() == SEED_STATUS


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        ('{"status":"busy","job_id":"t-1"}', RobotState.BUSY),
        ('{"status":"error","reason":"gripper"}', RobotState.ERROR),
        ('{"status":"Available"}', RobotState.AVAILABLE),
        ('{"status":"calibrating","extra":1}', RobotState.UNKNOWN),
    ],
)
def test_status_states(payload: str, state: RobotState) -> None:
    assert RobotStatus.parse(payload).state is state


@pytest.mark.parametrize("payload", ["", "{}", '{"status":""}', '"available"', b"\xff"])
def test_invalid_status(payload: str | bytes) -> None:
    with pytest.raises(ContractError):
        RobotStatus.parse(payload)
