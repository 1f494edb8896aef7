"""Settings of slicer-api, built once in ``main()`` (every variable is listed in .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from pantheon_common.settings import ServiceSettings

DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
"""The repository's profiles (slicer-api/profiles); the image copies them to the same place."""


class Settings(ServiceSettings):
    """Everything slicer-api reads from the environment."""

    slicer_api_host: str = Field(default="0.0.0.0", description="HTTP bind address")  # noqa: S104
    slicer_api_port: int = Field(default=9980, ge=1, le=65535)
    slicer_api_keys: str = Field(
        default="",
        description="comma-separated sha256 hex digests of the API keys accepted in X-API-Key",
    )
    slicer_engine: str = Field(default="prusa-slicer", description="engine binary (name or path)")
    slicer_install_engine: bool = Field(
        default=False,
        description="apt-get install prusa-slicer at start-up when it is missing (needs root)",
    )
    slicer_profiles_dir: Path = Field(default=DEFAULT_PROFILES_DIR)
    slicer_work_dir: Path | None = Field(
        default=None, description="where job folders live (default: a folder under the temp dir)"
    )
    slicer_max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    slicer_max_triangles: int = Field(default=5_000_000, ge=1)
    slicer_timeout_s: float = Field(default=600.0, gt=0, description="wall-clock limit per slice")
    slicer_engine_memory_mb: int = Field(
        default=4096, ge=256, description="address-space limit (RLIMIT_AS) of the engine"
    )
    slicer_engine_cpu_s: int = Field(
        default=1200, ge=1, description="CPU-time limit (RLIMIT_CPU) of the engine"
    )
    slicer_standby_engines: int = Field(
        default=2,
        ge=0,
        le=16,
        description="engine processes started ahead of the next slice, loaded and waiting "
        "(~70 MB each; saves the engine's ~75 ms start-up per slice; 0: off)",
    )
    slicer_parse_timeout_s: float = Field(default=60.0, gt=0)
    slicer_parse_memory_mb: int = Field(
        default=2048, ge=128, description="address-space limit of the model parser process"
    )
    slicer_parse_cpu_s: int = Field(default=60, ge=1)
    slicer_zip_max_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="3MF: total uncompressed size limit"
    )
    slicer_zip_max_ratio: float = Field(
        default=200.0, ge=1, description="3MF: largest compression ratio accepted per member"
    )
    slicer_workers: int = Field(default=1, ge=1, le=16, description="slices run at the same time")
    slicer_max_queued: int = Field(default=50, ge=1, description="jobs waiting beyond which 503")
    slicer_job_ttl_s: float = Field(
        default=3600.0, gt=0, description="finished jobs kept this long"
    )
    slicer_pricing_file: Path | None = Field(default=None, description="YAML file of quote rates")
    price_currency: str | None = None
    price_material_per_kg: str | None = Field(
        default=None, description="per material, e.g. PLA=25,PETG=30,ABS=28"
    )
    price_machine_per_hour: float | None = Field(default=None, ge=0)
    price_prep_hours: float | None = Field(default=None, ge=0)
    price_setup_fee: float | None = Field(default=None, ge=0)
    price_minimum: float | None = Field(default=None, ge=0)
    price_markup: float | None = Field(default=None, ge=0)
    price_waste: float | None = Field(default=None, ge=0, le=1)
    slicer_gcode_store_dir: Path | None = Field(
        default=None,
        description="the farm's G-code store (a directory shared with pantheon-api and "
        "printer-service); finished packages are also put there (empty: off)",
    )
    pantheon_api_url: str = Field(default="", description="pantheon-api base URL (empty: off)")
    pantheon_api_key: SecretStr | None = Field(
        default=None,
        description="X-API-Key that slicer-api presents to pantheon-api (empty: no hand-over)",
    )
    pantheon_api_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("slicer_gcode_store_dir", mode="before")
    @classmethod
    def _empty_dir_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("pantheon_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        # optional secret: an empty PANTHEON_API_KEY turns the hand-over off, it is no placeholder
        return None if value in ("", None) else value

    @field_validator("slicer_api_keys")
    @classmethod
    def _digests(cls, value: str) -> str:
        for digest in _split(value):
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise ValueError("SLICER_API_KEYS holds sha256 hex digests (64 hex characters)")
        return value

    @property
    def api_key_digests(self) -> tuple[str, ...]:
        """The configured key digests, lower-case."""
        return tuple(d.lower() for d in _split(self.slicer_api_keys))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
