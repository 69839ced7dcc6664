"""Settings come from PACING_CDS_* variables, are validated at start-up, and name what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cds.settings import SettingsError, load_settings, settings_table

CLI = str(Path(sys.executable).parent / "pacing-cds")


def test_defaults_serve_loopback_on_8080_with_sqlite_under_var() -> None:
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite:///var/pacing-cds.db"
    assert settings.env == "development"
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.origins == ("*",)  # the default: any origin in development, none in production


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACING_CDS_PORT", "9000")
    monkeypatch.setenv("PACING_CDS_ENV", "production")
    monkeypatch.setenv("PACING_CDS_AUTH", "disabled")
    monkeypatch.setenv("PACING_CDS_CORS_ORIGINS", "https://sandbox.cds-hooks.org, https://ehr.example.org")
    monkeypatch.setenv("PACING_CDS_PUBLIC_BASE_URL", "https://cds.example.org/")
    monkeypatch.setenv("PACING_CDS_FHIR_TIMEOUT_S", "1.5")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.env == "production"
    assert settings.cors_origins == ("https://sandbox.cds-hooks.org", "https://ehr.example.org")
    assert settings.base_url == "https://cds.example.org"
    assert settings.fhir_timeout_s == 1.5


@pytest.mark.parametrize(("name", "value"), [
    ("PORT", "eighty"), ("PORT", "70000"), ("ENV", "staging"), ("FHIR_TIMEOUT_S", "0"),
    ("MAX_BODY_BYTES", "10"), ("CORS_ORIGINS", "ftp://x"), ("PUBLIC_BASE_URL", "cds.example.org"),
    ("DATABASE_URL", "var/db.sqlite"), ("LOG_FORMAT", "xml"), ("METRICS_PORT", "8080"), ("METRICS_PORT", "0"),
])
def test_invalid_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                        value: str) -> None:
    monkeypatch.setenv(f"PACING_CDS_{name}", value)
    with pytest.raises(SettingsError, match=f"PACING_CDS_{name}"):
        load_settings()


@pytest.mark.slow  # runs a command
def test_serve_with_an_invalid_setting_exits_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run([CLI, "serve"], env={"PACING_CDS_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PACING_CDS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # runs a command
def test_settings_command_lists_every_variable() -> None:
    result = subprocess.run([CLI, "settings"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name, _default, _description in settings_table():
        assert name in result.stdout
    for required in ("PACING_CDS_HOST", "PACING_CDS_PORT", "PACING_CDS_DATABASE_URL", "PACING_CDS_RULES_DIR",
                     "PACING_CDS_PUBLIC_BASE_URL", "PACING_CDS_FHIR_TIMEOUT_S", "PACING_CDS_MAX_BODY_BYTES",
                     "PACING_CDS_CORS_ORIGINS", "PACING_CDS_ENV"):
        assert required in result.stdout


@pytest.mark.slow  # runs a command
def test_importing_the_package_does_nothing(tmp_path: Path) -> None:
    """No settings read, no file written, no thread started at import time."""
    code = ("import threading, cds, cds.api, cds.services, cds.store.database, cds.fhir.resolver, cds.cli; "
            "import os; assert threading.active_count() == 1, threading.enumerate(); "
            "assert not os.path.exists('var'), 'var/ created at import'")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PACING_CDS_PORT": "not-a-port"}, timeout=60)
    assert result.returncode == 0, result.stderr
