"""Typed settings from PACING_CDS_* environment variables, validated at start-up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(Exception):
    """The environment holds a setting that cannot be used; the message names each one."""


class Settings(BaseSettings):
    """Everything an operator can tune; every field is an environment variable PACING_CDS_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="PACING_CDS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = Field(
        "development", description="development or production; production is stricter about security"
    )
    host: str = Field("127.0.0.1", min_length=1, description="address the HTTP server binds to")
    port: int = Field(8080, ge=1, le=65535, description="TCP port the HTTP server listens on")
    database_url: str = Field(
        "sqlite:///var/pacing-cds.db",
        min_length=1,
        description="SQLAlchemy URL of the feedback and audit database (sqlite:///... or postgresql+psycopg://...)",
    )
    rules_dir: Path | None = Field(
        None, description="folder of the rule files and parameters.yaml (default: the rules installed with the package)"
    )
    public_base_url: str | None = Field(
        None, description="URL the EHR uses to reach this service (default http://HOST:PORT); JWT audience"
    )
    fhir_timeout_s: float = Field(3.0, gt=0, le=60, description="timeout of each FHIR request, in seconds")
    request_deadline_s: float = Field(
        4.0, gt=0, le=60, description="past this, a call answers {\"cards\": []} and the audit says why"
    )
    fhir_max_pages: int = Field(10, ge=1, le=100, description="most pages followed through Bundle 'next' links")
    max_body_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="largest request body accepted (413 above)"
    )
    cors_origins: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="comma-separated origins allowed by CORS, or * for any (default: * in development, "
        "none in production; * is refused in production)"
    )
    workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes (pacing-cds serve)")
    threads: int = Field(2, ge=1, le=64, description="threads per worker that run the application")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging level")
    log_format: Literal["text", "json"] = Field(
        "text", description="text (one readable line per event) or json (one JSON object per line, for collectors)"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535,
        description="serve GET /metrics on this port of HOST, without authentication, instead of on PORT",
    )
    issuers_file: Path | None = Field(
        None, description="YAML file of trusted CDS clients (iss, jwks and/or jwks_url, tenants); enables JWT auth"
    )
    auth: Literal["enabled", "disabled"] = Field(
        "enabled", description="disabled runs without client authentication (needed to run production open)"
    )
    redis_url: str | None = Field(
        None, description="Redis URL of the replay cache shared by several instances (default: in each process)"
    )
    chart_ttl_h: float = Field(
        24, gt=0, le=24 * 30, description="hours a card's chart and plan links stay open; then they answer 410 Gone"
    )
    chart_threads: int = Field(
        1, ge=1, le=16, description="threads per worker that draw chart and plan pages, apart from the threads that "
        "answer hook calls"
    )
    chart_queue: int = Field(
        8, ge=0, le=1000, description="chart and plan pages waiting for a chart thread, per worker; past this, 503"
    )
    fhir_servers: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="comma-separated FHIR server URLs that calls may name as fhirServer when the issuer "
        "has no fhir_servers list (default: loopback in development, none in production)"
    )
    fhir_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
        description="most bytes read from FHIR servers for one call, all responses together",
    )
    fhir_max_entries: int = Field(
        10000, ge=1, le=1000000, description="most Bundle entries read from FHIR servers for one call"
    )
    client_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a request's headers and body must arrive within this, else 408"
    )
    feedback_max_items: int = Field(100, ge=1, le=1000, description="most feedback items in one request")
    feedback_rate_per_minute: int = Field(
        120, ge=1, le=100000, description="feedback items accepted per client (issuer, else address) per minute"
    )
    retention_days: int = Field(
        365, ge=1, le=36500, description="feedback and audit records older than this are deleted by "
        "`pacing-cds purge`"
    )
    bulk_fhir_server: str | None = Field(
        None, description="FHIR server `pacing-cds worklist` exports from (Bulk Data $export) when given no folder"
    )
    bulk_group: str | None = Field(None, description="Group the worklist exports (the panel); default every Patient")
    bulk_client_id: str | None = Field(
        None, description="the worklist's SMART Backend Services client id at that FHIR server"
    )
    bulk_private_key: Path | None = Field(
        None, description="its private key (PEM, RSA or EC P-384), readable by this service only"
    )
    bulk_key_id: str | None = Field(None, description="the kid of that key in the JWK Set registered with the server")
    bulk_since: str | None = Field(
        None, description="`auto`: the worklist exports only what changed since its last run (Bulk Data _since)"
    )
    silent: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated service ids in silent mode: every card is evaluated and audited as silent, "
        "none returned (docs/governance.md)"
    )
    allow_all_interfaces: bool = Field(
        False, description="production binds HOST 0.0.0.0 or :: only when this is true"
    )
    now: datetime | None = Field(
        None, description="evaluate as of this instant, not the clock (demos, golden tests; not in production)"
    )

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.now is not None and self.env == "production":
            raise ValueError("PACING_CDS_NOW must not be set in production")
        if self.env == "production" and self.issuers_file is None and self.auth != "disabled":
            raise ValueError("production needs PACING_CDS_ISSUERS_FILE, or PACING_CDS_AUTH=disabled to run open")
        if self.env == "production":
            self._production_hardening()
        return self

    @field_validator("metrics_port")
    @classmethod
    def _own_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value == info.data.get("port"):
            raise ValueError("must differ from PACING_CDS_PORT")
        return value

    def _production_hardening(self) -> None:
        if self.host in ("0.0.0.0", "::", "") and not self.allow_all_interfaces:
            raise ValueError("production binds every interface only with PACING_CDS_ALLOW_ALL_INTERFACES=true "
                             "(PACING_CDS_HOST)")
        if self.public_base_url is None or not self.public_base_url.startswith("https://"):
            # Card links (charts, plans) and the JWT audience are made from it: a loopback default would send
            # the EHR to itself, over plain HTTP.
            raise ValueError("PACING_CDS_PUBLIC_BASE_URL must be set to the https URL the EHR reaches in production")
        if self.redis_url is not None and not _protected_redis(self.redis_url):
            raise ValueError("PACING_CDS_REDIS_URL must use rediss:// (TLS) or carry a password in production")
        if self.cors_origins is not None and "*" in self.cors_origins:
            raise ValueError("PACING_CDS_CORS_ORIGINS must list origins in production, not *")

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2026-11-20T09:00:00Z")
        # In UTC with the standard library's tzinfo, as the clock's own datetime.now(UTC): comparing datetimes of
        # two different tzinfo objects asks each for its offset, which made every window test of a pinned call
        # several times slower than the same test against the clock.
        return value.astimezone(UTC) if value is not None else None

    @field_validator("cors_origins", "fhir_servers", "silent", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for origin in value or ():
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"origin {origin!r} must be * or start with http:// or https://")
        return value

    @field_validator("fhir_servers")
    @classmethod
    def _check_fhir_servers(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from cds.fhir.allowlist import AllowList

        if value is not None:
            AllowList.parse(value)  # ValueError names the entry
        return value

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///var/pacing-cds.db")
        return value

    @property
    def rules_path(self) -> Path:
        """RULES_DIR, else the rules installed in the package (cds/rules), else the checkout's rules/ folder."""
        if self.rules_dir is not None:
            return self.rules_dir
        package = Path(__file__).resolve().parent
        installed = package / "rules"
        return installed if installed.is_dir() else package.parent / "rules"

    @property
    def origins(self) -> tuple[str, ...]:
        """CORS origins in force: the setting, else any origin in development and none in production."""
        if self.cors_origins is not None:
            return self.cors_origins
        return ("*",) if self.env == "development" else ()

    @property
    def allowed_fhir_servers(self) -> tuple[str, ...]:
        """FHIR servers callers without their own list may name: the setting, else loopback in development."""
        from cds.fhir.allowlist import LOOPBACK_ENTRIES

        if self.fhir_servers is not None:
            return self.fhir_servers
        return LOOPBACK_ENTRIES if self.env == "development" else ()

    @property
    def base_url(self) -> str:
        """The public URL of this service: PUBLIC_BASE_URL or the address it listens on."""
        return self.public_base_url or f"http://{self.host}:{self.port}"


def _protected_redis(url: str) -> bool:
    """A Redis URL that encrypts (rediss://) or authenticates (a password in the URL)."""
    parts = urlsplit(url)
    return parts.scheme == "rediss" or bool(parts.password)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment; raise SettingsError naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            name = "PACING_CDS_" + ("_".join(str(p) for p in err["loc"][:1]).upper() or "ENV")
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from exc


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for the README and `pacing-cds settings`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        rows.append((f"PACING_CDS_{name.upper()}", "" if default is None else str(default), field.description or ""))
    return rows
