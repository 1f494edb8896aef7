"""Settings mixins (pydantic-settings): every variable is listed in ``.env.example``.

Services compose the mixins they need into one class and build it once in ``main()``::

    class Settings(AmqpSettings, MongoSettings, ServiceSettings): ...

Secrets (``SecretStr`` fields, and passwords inside URLs) that are empty or look like a
placeholder are refused unless ``PANTHEON_ENV=dev``.
"""

import re
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pantheon_common.errors import ConfigurationError

PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "password",
        "passw0rd",
        "secret",
        "guest",
        "admin",
        "root",
        "test",
        "example",
        "default",
        "todo",
        "xxx",
        "12345678",
    }
)
"""Values no production secret may have (compared case-insensitively)."""
_PLACEHOLDER_PATTERN = re.compile(r"^(<.*>|\$\{.*\}|x+|\*+)$")
MIN_SECRET_LENGTH = 8

S = TypeVar("S", bound="BaseSettings")


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a production secret, or None if it is."""
    if not value:
        return "is empty"
    if value.lower() in PLACEHOLDER_SECRETS or _PLACEHOLDER_PATTERN.match(value):
        return "is a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def url_password(url: str) -> str | None:
    """The password embedded in a URL, if the URL carries credentials."""
    parts = urlsplit(url)
    return parts.password if parts.username is not None else None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and status output)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class ServiceSettings(BaseSettings):
    """Settings every service has: mode and logging."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="", case_sensitive=False)

    pantheon_env: Literal["production", "dev"] = Field(
        default="production",
        description="dev allows empty or placeholder secrets; never use it on the farm",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json", description="json for containers, text for a terminal"
    )

    @property
    def dev_mode(self) -> bool:
        """True when placeholder secrets are tolerated."""
        return self.pantheon_env == "dev"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.dev_mode:
            return self
        problems: list[str] = []
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                problem = secret_problem(value.get_secret_value())
                if problem:
                    problems.append(f"{name.upper()} {problem}")
            elif name.endswith("_url") and isinstance(value, str):
                password = url_password(value)
                if password is not None and (problem := secret_problem(password)):
                    problems.append(f"the password in {name.upper()} {problem}")
        if problems:
            raise ValueError(
                "; ".join(problems) + " (set real secrets in .env, or PANTHEON_ENV=dev locally)"
            )
        return self


class AmqpSettings(ServiceSettings):
    """RabbitMQ connection."""

    amqp_url: str = Field(
        default="amqp://127.0.0.1:5672/%2F",
        description="amqp://user:password@host:5672/vhost",
    )
    amqp_heartbeat_s: int = Field(default=30, ge=0, description="AMQP heartbeat, seconds")


class MqttSettings(ServiceSettings):
    """Mosquitto robot bus connection."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker")
    mqtt_tls_insecure: bool = Field(
        default=False, description="skip certificate verification (explicit opt-in)"
    )
    mqtt_topic_prefix: str = Field(
        default="", description="prepended to every topic; empty on the farm, used by tests"
    )
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)


class MongoSettings(ServiceSettings):
    """MongoDB farm state."""

    mongo_url: str = Field(default="mongodb://127.0.0.1:27017", description="MongoDB URL")
    mongo_db: str = Field(default="pantheon", description="database name")


class MysqlSettings(ServiceSettings):
    """MySQL utilization history."""

    mysql_url: str = Field(
        default="mysql+pymysql://pantheon@127.0.0.1:3306/utilization?charset=utf8mb4",
        description="SQLAlchemy URL of the utilization database",
    )


class ServiceTokenSettings(ServiceSettings):
    """The shared token services present to each other."""

    service_token: SecretStr = Field(
        default=SecretStr(""), description="shared service-to-service bearer token"
    )


class FarmSettings(ServiceSettings):
    """Where the farm layout lives."""

    farm_layout: Path = Field(default=Path("farm.yaml"), description="farm layout YAML")


class GcodeStoreSettings(ServiceSettings):
    """The local G-code store."""

    gcode_store_dir: Path = Field(
        default=Path("/var/lib/pantheon/gcode"), description="local G-code store directory"
    )


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment, turning validation errors into one clear error."""
    try:
        return cls(**overrides)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]).upper() or "settings"
            lines.append(f"{loc}: {e['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(lines)) from err
