"""Settings of triage: defaults < TOML file < ``TRIAGE_*`` environment < command-line flags.

One :class:`Settings` object is built by :func:`load_settings` at start-up and passed down; nothing
reads the environment or the file anywhere else.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from triage.errors import ConfigError

ENV_PREFIX = "TRIAGE_"
CONFIG_ENV = "TRIAGE_CONFIG"

#: Short environment names of DESIGN.md section 3, mapped to their place in the settings.
SHORT_ENV: Mapping[str, tuple[str, ...]] = {
    "TRIAGE_AE_TITLE": ("dicom", "ae_title"),
    "TRIAGE_DICOM_PORT": ("dicom", "port"),
    "TRIAGE_WEB_HOST": ("web", "host"),
    "TRIAGE_WEB_PORT": ("web", "port"),
}

_AE_TITLE = re.compile(r"^[\x20-\x7e]{1,16}$")


class _Section(BaseModel):
    """A table of the TOML file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_ae_title(value: str) -> str:
    if value and (not _AE_TITLE.match(value) or value.strip() != value or "\\" in value):
        raise ValueError("expected 1 to 16 printable ASCII characters without backslash or edge spaces")
    return value


Port = Annotated[int, Field(ge=0, le=65535)]
AETitle = Annotated[str, AfterValidator(_check_ae_title)]
PatientField = Literal["accession", "patient_id", "patient_name", "description"]


class DicomSettings(_Section):
    """The DICOM listener (SCP) and its association policy."""

    ae_title: str = "TRIAGE"
    host: str = "0.0.0.0"  # noqa: S104 - a DICOM listener serves the hospital network
    port: Port = 11112
    allowed_aets: list[AETitle] = Field(default_factory=list)
    max_associations: int = Field(10, ge=1, le=1000)
    max_pdu_size: int = Field(0, ge=0)
    acse_timeout: float = Field(30.0, gt=0)
    dimse_timeout: float = Field(30.0, gt=0)
    network_timeout: float = Field(60.0, gt=0)
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""


    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        if not value:
            raise ValueError("an AE title is required")
        return _check_ae_title(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> DicomSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be given together")
        return self


class SeriesSettings(_Section):
    """When a series is complete and whether it is analysed (the series gate)."""

    quiet_seconds: float = Field(10.0, gt=0)
    min_slices: int = Field(8, ge=1)
    max_slices: int = Field(2000, ge=1)
    min_slice_thickness: float = Field(0.5, ge=0)
    max_slice_thickness: float = Field(10.0, gt=0)
    body_part_pattern: str = r"(?i)head|brain|skull|cran|neuro|^$"
    description_pattern: str = r"(?i)head|brain|skull|cran|neuro|stroke|^$"
    require_axial: bool = True

    @field_validator("body_part_pattern", "description_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class WorkerSettings(_Section):
    """The classification worker."""

    device: str = "auto"
    backend: Literal["torch", "onnx"] = "torch"
    batch_size: int = Field(16, ge=1, le=1024)
    threads: int = Field(0, ge=0)
    decode_threads: int = Field(1, ge=1)
    poll_seconds: float = Field(2.0, gt=0)
    lease_seconds: float = Field(120.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    streaming: bool = True
    aggregation: Literal["max", "adjacent"] = "max"
    adjacent_slices: int = Field(2, ge=1)
    retention_days: float = Field(0.0, ge=0)
    heatmaps: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return value


class WebSettings(_Section):
    """The web application."""

    host: str = "127.0.0.1"
    port: Port = 8080
    secret_key: str = ""
    base_url: str = ""
    login_attempts_per_minute: int = Field(10, ge=1)



class ThresholdSettings(_Section):
    """Initial per-class thresholds; admins change them on /admin (stored in the database)."""

    any: float = Field(0.5, ge=0, le=1)
    epidural: float = Field(0.5, ge=0, le=1)
    intraparenchymal: float = Field(0.5, ge=0, le=1)
    intraventricular: float = Field(0.5, ge=0, le=1)
    subarachnoid: float = Field(0.5, ge=0, le=1)
    subdural: float = Field(0.5, ge=0, le=1)


class WebhookSettings(_Section):
    """JSON POST of each alert, signed with HMAC-SHA256."""

    url: str = ""
    secret: str = ""
    timeout_seconds: float = Field(5.0, gt=0)
    patient_fields: list[PatientField] = Field(default_factory=lambda: list[PatientField](["accession"]))


class SmtpSettings(_Section):
    """E-mail alerts."""

    host: str = ""
    port: Port = 25
    sender: str = ""
    recipients: list[str] = Field(default_factory=list)
    starttls: bool = False
    username: str = ""
    password: str = ""
    patient_fields: list[PatientField] = Field(default_factory=lambda: list[PatientField](["accession"]))
    timeout_seconds: float = Field(10.0, gt=0)
    tls_ca: str = ""  # CA bundle that signed the server's STARTTLS certificate (empty: the system's)



class DicomExportSettings(_Section):
    """Where the structured report goes (the PACS)."""

    ae_title: AETitle = ""
    host: str = ""
    port: Port = 104
    key_objects: bool = True
    secondary_capture: bool = False
    timeout_seconds: float = Field(30.0, gt=0)



class AlertSettings(_Section):
    """The alert outbox and its channels."""

    escalate_after_minutes: float = Field(10.0, ge=0)  # for critical studies; 0: no escalation
    escalation_channel: Literal["webhook", "email", ""] = "email"
    max_escalations: int = Field(3, ge=0)  # per study; 0: no limit
    max_attempts: int = Field(8, ge=1)
    backoff_seconds: float = Field(5.0, gt=0)
    max_backoff_seconds: float = Field(600.0, gt=0)
    dispatch_seconds: float = Field(1.0, gt=0)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    dicom: DicomExportSettings = Field(default_factory=DicomExportSettings)


class Settings(BaseSettings):
    """Every setting of triage. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("./triage-data")
    database_url: str = ""
    storage_dir: Path | None = None
    model: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    demo: bool = False

    dicom: DicomSettings = Field(default_factory=DicomSettings)
    series: SeriesSettings = Field(default_factory=SeriesSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("model", mode="before")
    @classmethod
    def _empty_model(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'triage.db').as_posix()}"
        if self.storage_dir is None:
            self.storage_dir = self.data_dir / "store"
        return self

    @property
    def store(self) -> Path:
        """The DICOM store directory (never None after validation)."""
        assert self.storage_dir is not None  # noqa: S101 - filled in by the validator
        return self.storage_dir

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _ShortEnvSource(settings_cls),
            env_settings,
        ]
        if _TOML_PATH is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_TOML_PATH))
        return tuple(sources)


class _ShortEnvSource(PydanticBaseSettingsSource):
    """``TRIAGE_AE_TITLE`` and friends: the short names of DESIGN.md section 3."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for env, (section, key) in SHORT_ENV.items():
            if env in os.environ:
                values.setdefault(section, {})[key] = os.environ[env]
        return values


_TOML_PATH: Path | None = None


def _check_file(path: Path) -> None:
    """Reject unreadable files and unknown keys up front, with the key named."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot read the file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", str(path), f"not valid TOML ({exc})") from exc
    _check_keys(data, Settings, "")


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in model.model_fields:
            raise ConfigError(name, value, "unknown key")
        annotation = model.model_fields[key].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_keys(value, annotation, f"{name}.")


def _first_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "settings"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return ConfigError(key, error.get("input"), message)


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and ``overrides``.

    Parameters
    ----------
    config
        TOML file; when None, ``TRIAGE_CONFIG`` names it, else no file is read.
    overrides
        Values from command-line flags (highest precedence); ``None`` values are ignored.
        Nested keys may be given as dictionaries (``dicom={"port": 104}``).

    Raises
    ------
    ConfigError
        Naming the first invalid key and its value.
    """
    global _TOML_PATH  # noqa: PLW0603 - pydantic-settings reads its sources from the class
    path = config if config is not None else os.environ.get(CONFIG_ENV) or None
    _TOML_PATH = Path(path) if path else None
    if _TOML_PATH is not None:
        _check_file(_TOML_PATH)
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**clean)
    except ValidationError as exc:
        raise _first_error(exc) from None
    finally:
        _TOML_PATH = None
    check_database_url(settings.database_url)
    return settings


def check_database_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is an SQLite or PostgreSQL SQLAlchemy URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database_url", url, "not a database URL") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("database_url", url, "expected sqlite:///PATH or postgresql+psycopg://...")
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() not in ("psycopg", "psycopg2"):
        raise ConfigError("database_url", url, "PostgreSQL needs the psycopg driver: postgresql+psycopg://")


def prepare_directories(settings: Settings) -> None:
    """Create the data and storage directories; raise :class:`ConfigError` if they are not writable."""
    for key, path in (("data_dir", settings.data_dir), ("storage_dir", settings.store)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(key, str(path), f"cannot create the directory ({exc.strerror})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(key, str(path), "the directory is not writable")
    if settings.database_url.startswith("sqlite:///"):
        db_path = Path(settings.database_url.removeprefix("sqlite:///"))
        if db_path.name and db_path.as_posix() != ":memory:":
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError("database_url", settings.database_url, exc.strerror or "") from None


EXAMPLE_CONFIG = """\
# triage configuration. Every key is optional; the values shown are the defaults.
# Each key can also be set in the environment as TRIAGE_<SECTION>__<KEY>, e.g. TRIAGE_WORKER__DEVICE=cpu.

data_dir = "./triage-data"      # SQLite file and DICOM store live here by default
# database_url = "postgresql+psycopg://triage@db.example.org/triage"
# storage_dir = "./triage-data/store"
# model = "/opt/triage/models/ich-resnet50"

[dicom]
ae_title = "TRIAGE"
port = 11112
allowed_aets = []               # empty: any calling AE
max_associations = 10
tls_cert = ""                   # tls_cert + tls_key (+ tls_ca for client certificates) turn TLS on
tls_key = ""
tls_ca = ""

[series]
quiet_seconds = 10
min_slices = 8

[worker]
device = "auto"                 # auto | cpu | cuda | cuda:N
batch_size = 16
threads = 0                     # 0: torch default
poll_seconds = 2
lease_seconds = 120
max_attempts = 3
streaming = true

[web]
host = "127.0.0.1"
port = 8080
secret_key = ""                 # required outside demo mode

[thresholds]                    # initial values; admins change them on /admin
any = 0.5
epidural = 0.5
intraparenchymal = 0.5
intraventricular = 0.5
subarachnoid = 0.5
subdural = 0.5

[alerts]
escalate_after_minutes = 10

[alerts.webhook]
url = ""
secret = ""

[alerts.smtp]
host = ""
port = 25
sender = ""
recipients = []
starttls = false

[alerts.dicom]
ae_title = ""
host = ""
port = 104
"""
