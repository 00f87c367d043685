"""Settings: defaults < config file < environment < flags, one-line errors."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from neuro_api.app import build_parser
from neuro_api.settings import REDACTED, SPECS, Settings, SettingsError, load_settings


def parse(*argv: str) -> argparse.Namespace:
    """Parse with the real command line, so flags and settings stay in step."""
    return build_parser().parse_args(list(argv))


def test_every_setting_has_a_flag() -> None:
    flags = build_parser().format_help()
    for spec in SPECS:
        assert spec.option in flags, spec.option


def test_field_defaults_match_specs() -> None:
    derived = {"sections", "sources", "warnings"}
    fields = {f.name: f for f in dataclasses.fields(Settings) if f.name not in derived}
    assert list(fields) == [spec.name for spec in SPECS]
    for spec in SPECS:
        assert fields[spec.name].default == spec.default, spec.name


def test_defaults_need_nothing() -> None:
    settings = load_settings(parse(), environ={})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.engine == "console"
    assert not settings.exposed
    assert settings.sources == {}


def test_layers_override_in_order(tmp_path: Path) -> None:
    config = tmp_path / "neuro.toml"
    config.write_text('port = 9000\nhttp-port = 9001\nengine = "random"\n')
    env = {"NEURO_API_PORT": "9100", "NEURO_API_RESULT_TIMEOUT": "5"}
    settings = load_settings(
        parse("--config", str(config), "--result-timeout", "7.5"), environ=env
    )
    assert settings.port == 9100  # env beats file
    assert settings.http_port == 9001  # file beats default
    assert settings.engine == "random"
    assert settings.result_timeout == 7.5  # flag beats env
    assert settings.sources == {
        "port": "env",
        "http_port": "file",
        "engine": "file",
        "result_timeout": "flag",
    }


def test_boolean_flags_and_env() -> None:
    assert load_settings(parse("--no-http"), environ={}).http is False
    assert load_settings(parse(), environ={"NEURO_API_HTTP": "off"}).http is False
    assert load_settings(parse(), environ={"NEURO_API_TUNNEL": "yes"}).tunnel
    with pytest.raises(SettingsError, match="NEURO_API_TUNNEL: expected true or false"):
        load_settings(parse(), environ={"NEURO_API_TUNNEL": "maybe"})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port: must be a port number from 0 to 65535"),
        (["--port", "eighty"], "--port: expected an integer, got 'eighty'"),
        (["--result-timeout", "0"], "--result-timeout: must be > 0"),
        (["--result-timeout", "nan"], "--result-timeout: expected a finite number"),
        (["--max-retries", "-1"], "--max-retries: must be >= 0"),
        (["--engine", "llm"], "--engine: 'llm' is not one of console, random"),
        (["--certfile", "/nonexistent.pem"], "--certfile: cannot read file"),
        (["--access-log", "/nonexistent/a.log"], "--access-log: cannot write file"),
        (["--access-log", "/"], "--access-log: '/' is a directory"),
        (["--access-log", ""], "--access-log: must not be empty"),
    ],
)
def test_bad_flag_values_name_the_setting(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(parse(*argv), environ={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_certfile_needs_keyfile(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="give both or neither"):
        load_settings(parse("--certfile", str(cert)), environ={})


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--config: cannot read"):
        load_settings(parse("--config", str(tmp_path / "missing.toml")), environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = ")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(parse("--config", str(bad)), environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings(parse("--config", str(unknown)), environ={})
    typed = tmp_path / "typed.toml"
    typed.write_text('port = "high"\n')
    with pytest.raises(SettingsError, match=r"typed.toml: port: expected an integer"):
        load_settings(parse("--config", str(typed)), environ={})
    fractional = tmp_path / "fractional.toml"
    fractional.write_text("max_retries = 1.5\n")
    with pytest.raises(SettingsError, match=r"max_retries: expected an integer"):
        load_settings(parse("--config", str(fractional)), environ={})
    whole = tmp_path / "whole.toml"
    whole.write_text("port = 8002.0\n")
    assert load_settings(parse("--config", str(whole)), environ={}).port == 8002


@pytest.mark.parametrize("token", ["", "short", "has spaces in the token"])
def test_weak_api_token_is_refused(token: str) -> None:
    with pytest.raises(SettingsError, match="NEURO_API_TOKEN: must be at least 16"):
        load_settings(parse(), environ={"NEURO_API_TOKEN": token})


def test_secrets_are_redacted() -> None:
    settings = load_settings(
        parse("--api-token", "s3cret-s3cret-s3cret"),
        environ={"NGROK_AUTHTOKEN": "ngrok-s3cret"},
    )
    shown = settings.redacted()
    assert shown["api_token"] == REDACTED
    assert shown["ngrok_authtoken"] == REDACTED
    assert "s3cret" not in repr(shown)
    assert "s3cret" not in repr(settings)  # secrets stay out of reprs
    assert load_settings(parse(), environ={}).redacted()["api_token"] is None


@pytest.mark.parametrize(
    ("argv", "exposed"),
    [
        ([], False),
        (["--tunnel"], True),
        (["--host", "0.0.0.0"], True),
        (["--http-host", "192.0.2.1"], True),
        (["--host", "localhost", "--http-host", "127.0.0.2"], False),
    ],
)
def test_exposed(argv: list[str], exposed: bool) -> None:
    assert load_settings(parse(*argv), environ={}).exposed is exposed


def test_unknown_neuro_api_variables_warn_with_the_closest_setting() -> None:
    env = {
        "NEURO_API_PROT": "9000",  # a typo
        "NEURO_API_HTTP_PROT": "9001",
        "NEURO_API_API_TOKEN": "a-token-that-is-long-enough",  # the setting's name
        "NEURO_API_NGROK_AUTHTOKEN": "x",  # ngrok's own variable is meant
        "neuro_api_port": "9002",  # variables are case-sensitive
        "NEURO_API_XYZZY": "1",  # nothing close
        "NEURO_API_PORT": "9100",  # known: no warning
        "NGROK_AUTHTOKEN": "token",  # known, not ours by prefix
        "NEURO_SDK_WS_URL": "ws://127.0.0.1:8000",  # another program's
        "PROT": "1",
    }
    settings = load_settings(parse(), environ=env)
    assert settings.port == 9100
    assert settings.api_token is None  # read from no unknown variable
    ignored = "is not a neuro_api setting and is ignored"
    assert settings.warnings == (
        f"NEURO_API_API_TOKEN {ignored} (did you mean NEURO_API_TOKEN?)",
        f"NEURO_API_HTTP_PROT {ignored} (did you mean NEURO_API_HTTP_PORT?)",
        f"NEURO_API_NGROK_AUTHTOKEN {ignored} (did you mean NGROK_AUTHTOKEN?)",
        f"NEURO_API_PROT {ignored} (did you mean NEURO_API_PORT?)",
        f"NEURO_API_XYZZY {ignored}",
        f"neuro_api_port {ignored} (did you mean NEURO_API_PORT?)",
    )
    # Values are never shown (a mistyped token variable holds a secret).
    assert "a-token" not in " ".join(settings.warnings)


def test_warnings_are_neither_compared_nor_shown() -> None:
    warned = load_settings(parse(), environ={"NEURO_API_PROT": "1"})
    assert warned.warnings
    assert load_settings(parse(), environ={}).warnings == ()
    assert warned == Settings()
    assert "NEURO_API_PROT" not in repr(warned)
    assert "warnings" not in warned.redacted()


def test_every_suggested_variable_is_read() -> None:
    # A suggestion must name a variable that really sets something.
    for spec in SPECS:
        if spec.env is None:
            continue
        typo = "NEURO_API_" + spec.name.upper() + "X"
        (warning,) = load_settings(parse(), environ={typo: ""}).warnings
        assert warning.endswith(f"(did you mean {spec.env}?)"), warning
