"""Settings mixins: environment names, and placeholder secrets refused outside dev mode."""

import pytest
from pydantic import SecretStr

from pantheon_common.errors import ConfigurationError
from pantheon_common.settings import (
    AmqpSettings,
    MongoSettings,
    MqttSettings,
    ServiceTokenSettings,
    load_settings,
    redact_url,
    secret_problem,
)


class Settings(AmqpSettings, MongoSettings, MqttSettings, ServiceTokenSettings):
    """A service composing mixins, as services do."""


GOOD = {
    "AMQP_URL": "amqp://pantheon:Zr8fQ2kLw9xT@rabbit:5672/%2F",
    "SERVICE_TOKEN": "tkn-4f8a9c0e1b2d3f4a5b6c",
    "MONGO_URL": "mongodb://mongo:27017/?replicaSet=rs0",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*GOOD, "PANTHEON_ENV", "MQTT_PORT", "MQTT_PASSWORD", "MQTT_USERNAME"]:
        monkeypatch.delenv(name, raising=False)


def test_reads_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in GOOD.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MQTT_PORT", "11883")
    s = load_settings(Settings)
    assert s.amqp_url == GOOD["AMQP_URL"]
    assert s.service_token.get_secret_value() == GOOD["SERVICE_TOKEN"]
    assert s.mqtt_port == 11883
    assert s.mongo_db == "pantheon"
    assert not s.dev_mode


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SERVICE_TOKEN", "", "SERVICE_TOKEN is empty"),
        ("SERVICE_TOKEN", "changeme", "SERVICE_TOKEN is a placeholder"),
        ("SERVICE_TOKEN", "<your-token>", "SERVICE_TOKEN is a placeholder"),
        ("SERVICE_TOKEN", "short", "shorter than"),
        ("AMQP_URL", "amqp://guest:guest@rabbit:5672/%2F", "password in AMQP_URL is a placeholder"),
        ("MONGO_URL", "mongodb://root:@mongo:27017", "password in MONGO_URL is empty"),
        ("MQTT_PASSWORD", "password", "MQTT_PASSWORD is a placeholder"),
    ],
)
def test_placeholder_secrets_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    for k, v in GOOD.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(Settings)


def test_dev_mode_allows_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTHEON_ENV", "dev")
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1/%2F")
    s = load_settings(Settings)
    assert s.dev_mode
    assert s.service_token == SecretStr("")


def test_url_without_credentials_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", GOOD["SERVICE_TOKEN"])
    assert load_settings(Settings).mongo_url == "mongodb://127.0.0.1:27017"


def test_invalid_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTHEON_ENV", "dev")
    monkeypatch.setenv("MQTT_PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="MQTT_PORT"):
        load_settings(Settings)


def test_helpers() -> None:
    assert redact_url("amqp://u:s3cret@h/") == "amqp://u:***@h/"
    assert redact_url("mongodb://h:27017") == "mongodb://h:27017"
    assert secret_problem("Zr8fQ2kLw9xT") is None
