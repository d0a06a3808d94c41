"""Every configuration and start-up error is one line naming the setting and what was wrong, exit 2,
never a traceback; bad values are refused, not ignored or read leniently."""

from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

import pytest

from imagestudio.config import DEFAULT_CORS_ORIGINS, Config, ConfigError
from tests.cli.conftest import run_cli
from tests.servers import free_port


def assert_one_line_exit_2(done_stderr: str, status: int, *names: str) -> str:
    assert status == 2, done_stderr
    assert "Traceback" not in done_stderr
    lines = done_stderr.splitlines()
    assert len(lines) == 1, done_stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"IMAGESTUDIO_LOG_LEVEL": "verbose"}, ["IMAGESTUDIO_LOG_LEVEL", "'verbose'"]),
        ({"IMAGESTUDIO_LOG_FORMAT": "fancy"}, ["IMAGESTUDIO_LOG_FORMAT", "'fancy'"]),
        ({"IMAGESTUDIO_SHUTDOWN_GRACE": "-5"}, ["IMAGESTUDIO_SHUTDOWN_GRACE", "-5"]),
        ({"IMAGESTUDIO_SHUTDOWN_GRACE": "nan"}, ["IMAGESTUDIO_SHUTDOWN_GRACE", "finite"]),
        ({"IMAGESTUDIO_CORS_ORIGINS": ","}, ["IMAGESTUDIO_CORS_ORIGINS", "lists nothing"]),
        ({"IMAGESTUDIO_CORS_ORIGINS": "localhost:5173"}, ["IMAGESTUDIO_CORS_ORIGINS", "'localhost:5173'"]),
        (
            {"IMAGESTUDIO_CORS_ORIGINS": "http://localhost:5173/"},
            ["IMAGESTUDIO_CORS_ORIGINS", "without a path"],
        ),
        ({"IMAGESTUDIO_ALLOWED_HOSTS": " , "}, ["IMAGESTUDIO_ALLOWED_HOSTS", "lists nothing"]),
        ({"IMAGESTUDIO_TRUSTED_PROXIES": ","}, ["IMAGESTUDIO_TRUSTED_PROXIES", "lists nothing"]),
        ({"IMAGESTUDIO_MAX_RUNNING": "0"}, ["IMAGESTUDIO_MAX_RUNNING", "at least 1"]),
        ({"IMAGESTUDIO_MAX_QUEUED": "many"}, ["IMAGESTUDIO_MAX_QUEUED", "whole number"]),
        ({"IMAGESTUDIO_HEADER_TIMEOUT": "inf"}, ["IMAGESTUDIO_HEADER_TIMEOUT", "finite"]),
        ({"RUNWARE_TIMEOUT": "0"}, ["RUNWARE_TIMEOUT", "positive"]),
        ({"RUNWARE_API_URL": "api.runware.ai/v1"}, ["RUNWARE_API_URL", "http:// or https://"]),
        ({"IMAGESTUDIO_ENGINE": "dall-e"}, ["IMAGESTUDIO_ENGINE", "'dall-e'"]),
        ({"IMAGESTUDIO_DATABASE_URL": "imagestudio.db"}, ["IMAGESTUDIO_DATABASE_URL", "not a database URL"]),
        ({"IMAGESTUDIO_DATABASE_URL": "mysql://me:hunter2@db/x"}, ["IMAGESTUDIO_DATABASE_URL", "not mysql"]),
        ({"IMAGESTUDIO_STORAGE_URL": "/srv/images"}, ["IMAGESTUDIO_STORAGE_URL", "s3://bucket/prefix"]),
        (
            {"IMAGESTUDIO_STORAGE_URL": "s3://me:hunter2@images/team"},
            ["IMAGESTUDIO_STORAGE_URL", "without credentials", "AWS_SECRET_ACCESS_KEY"],
        ),
        ({"IMAGESTUDIO_STORAGE_REDIRECT": "maybe"}, ["IMAGESTUDIO_STORAGE_REDIRECT", "'maybe'"]),
        (
            {"IMAGESTUDIO_STORAGE_REDIRECT": "yes"},
            ["IMAGESTUDIO_STORAGE_REDIRECT", "IMAGESTUDIO_STORAGE_URL"],
        ),
    ],
)
def test_a_bad_setting_stops_serve_with_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], names: list[str]
) -> None:
    done = run_cli("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), env=env)

    line = assert_one_line_exit_2(done.stderr, done.returncode, *names)
    assert line.startswith("imagestudio: configuration error: ")
    assert "hunter2" not in line  # a database URL's password is never echoed
    assert not (tmp_path / "data" / "imagestudio.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    "command", [["generate", "a red fox"], ["serve", "--port", "0"], ["doctor"], ["db", "upgrade"]]
)
def test_a_data_dir_that_is_a_file_is_one_line_naming_the_flag(tmp_path: Path, command: list[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    done = run_cli(*command, "--data-dir", str(a_file))

    line = assert_one_line_exit_2(done.stderr, done.returncode, "--data-dir", str(a_file))
    assert line.endswith("is not a folder (it is a file)")
    assert a_file.read_text() == "not a folder"


def test_the_data_dir_variable_is_named_when_it_chose_the_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    done = run_cli("generate", "a red fox", env={"IMAGESTUDIO_DATA_DIR": str(a_file)})

    assert_one_line_exit_2(done.stderr, done.returncode, "IMAGESTUDIO_DATA_DIR", "is not a folder")


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_a_data_dir_that_cannot_be_created_is_one_line_with_the_reason(tmp_path: Path) -> None:
    done = run_cli("generate", "a red fox", "--data-dir", "/proc/imagestudio-nowhere")

    line = assert_one_line_exit_2(done.stderr, done.returncode, "--data-dir", "/proc/imagestudio-nowhere")
    assert "cannot create the folder" in line


def test_db_current_on_a_file_says_the_data_dir_is_not_a_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "imagestudio"
    a_file.write_bytes(b"")
    done = run_cli("db", "current", "--data-dir", str(a_file))

    assert "no database yet" not in done.stdout
    assert_one_line_exit_2(done.stderr, done.returncode, "--data-dir", "is not a folder")


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    done = run_cli("serve", "--port", "70000", "--data-dir", str(tmp_path))

    assert_one_line_exit_2(done.stderr, done.returncode, "--port", "70000")


def test_a_port_in_use_is_one_line_with_a_hint_before_the_server_starts(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        done = run_cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), timeout=60)

    line = assert_one_line_exit_2(done.stderr, done.returncode)
    assert line == (
        f"imagestudio: cannot listen on 127.0.0.1:{port}: address already in use"
        " (is another imagestudio running? --port chooses another)"
    )
    assert "startup complete" not in done.stdout + done.stderr
    assert not (tmp_path / "data" / "imagestudio.db").exists()  # nothing was started


def test_a_host_this_machine_does_not_have_is_one_line(tmp_path: Path) -> None:
    token = {"IMAGESTUDIO_API_TOKEN": "a-long-enough-test-token-1234"}
    done = run_cli("serve", "--host", "192.0.2.1", "--port", "0", "--data-dir", str(tmp_path), env=token)

    line = assert_one_line_exit_2(done.stderr, done.returncode, "cannot listen on 192.0.2.1:0")
    assert "--host" in line


# In-process: the same rules on Config itself (what the library and the server read).


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"IMAGESTUDIO_LOG_LEVEL": "loud"}, "IMAGESTUDIO_LOG_LEVEL"),
        ({"IMAGESTUDIO_SHUTDOWN_GRACE": "-0.5"}, "IMAGESTUDIO_SHUTDOWN_GRACE"),
        ({"IMAGESTUDIO_SHUTDOWN_GRACE": "inf"}, "IMAGESTUDIO_SHUTDOWN_GRACE"),
        ({"RUNWARE_TIMEOUT": "nan"}, "RUNWARE_TIMEOUT"),
        ({"RUNWARE_TIMEOUT": "-1"}, "RUNWARE_TIMEOUT"),
        ({"RUNWARE_API_URL": "ftp://files.example"}, "RUNWARE_API_URL"),
        ({"RUNWARE_API_URL": "http://"}, "RUNWARE_API_URL"),
        ({"RUNWARE_API_URL": "http://host:99999/v1"}, "RUNWARE_API_URL"),
        ({"IMAGESTUDIO_CORS_ORIGINS": "*"}, "IMAGESTUDIO_CORS_ORIGINS"),
        ({"IMAGESTUDIO_STORAGE_ROOTS": ":"}, "IMAGESTUDIO_STORAGE_ROOTS"),
        ({"IMAGESTUDIO_MAX_QUEUED": "-1"}, "IMAGESTUDIO_MAX_QUEUED"),
        ({"IMAGESTUDIO_MAX_CONNECTIONS": "0"}, "IMAGESTUDIO_MAX_CONNECTIONS"),
        ({"IMAGESTUDIO_MAX_QUEUED_BYTES": "0"}, "IMAGESTUDIO_MAX_QUEUED_BYTES"),
        ({"IMAGESTUDIO_MIN_BODY_RATE": "1.5"}, "IMAGESTUDIO_MIN_BODY_RATE"),
        ({"IMAGESTUDIO_RATE_LIMIT": "lots"}, "IMAGESTUDIO_RATE_LIMIT"),
        ({"IMAGESTUDIO_STORAGE_URL": "gs://images/team"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_URL": "s3://Images/team"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_URL": "s3://images:9000/team"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_URL": "s3://images/team/../other"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_URL": "s3://images/team?versionId=1"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_URL": "s3:///team"}, "IMAGESTUDIO_STORAGE_URL"),
        ({"IMAGESTUDIO_STORAGE_REDIRECT": "2"}, "IMAGESTUDIO_STORAGE_REDIRECT"),
    ],
)
def test_config_refuses_a_bad_value_naming_its_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env(env)


def test_keywords_are_read_in_any_case_and_unset_lists_keep_their_defaults() -> None:
    config = Config.from_env({"IMAGESTUDIO_LOG_LEVEL": " WARNING ", "IMAGESTUDIO_LOG_FORMAT": "JSON"})
    assert (config.log_level, config.log_format) == ("warning", "json")
    blank = Config.from_env({"IMAGESTUDIO_CORS_ORIGINS": "  ", "IMAGESTUDIO_ALLOWED_HOSTS": ""})
    assert blank.cors_origins == DEFAULT_CORS_ORIGINS
    assert blank.allowed_hosts == ()
    listed = Config.from_env({"IMAGESTUDIO_CORS_ORIGINS": "http://localhost:5173, tauri://localhost,null",
                              "IMAGESTUDIO_API_TOKEN": "a-long-enough-test-token-1234"})  # fmt: skip
    assert listed.cors_origins == ("http://localhost:5173", "tauri://localhost", "null")
    assert Config.from_env({"IMAGESTUDIO_SHUTDOWN_GRACE": "0"}).shutdown_grace == 0  # 0: cancel at once
    assert math.isclose(Config.from_env({"RUNWARE_TIMEOUT": "2.5"}).runware_timeout, 2.5)


def test_object_storage_settings_are_read_and_its_secrets_kept_for_the_redactor() -> None:
    secret, token = "an-aws-secret-key-for-the-test", "an-aws-session-token-for-the-test"
    env = {
        "IMAGESTUDIO_STORAGE_URL": " s3://images.team-1/studio/prod ",
        "IMAGESTUDIO_STORAGE_REDIRECT": "TRUE",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": token,
    }
    config = Config.from_env(env)
    assert (config.storage_url, config.storage_redirect) == ("s3://images.team-1/studio/prod", True)
    assert {secret, token} <= set(config.secrets)
    assert secret not in repr(config)
    folders = Config.from_env({"IMAGESTUDIO_STORAGE_REDIRECT": "false", "AWS_SECRET_ACCESS_KEY": secret})
    assert (folders.storage_url, folders.storage_redirect) == (None, False)  # the folders: the default
    assert secret not in folders.secrets  # not ours to redact when we do not use it


def test_config_built_directly_is_held_to_the_same_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IMAGESTUDIO_LOG_LEVEL"):
        Config(data_dir=tmp_path, log_level="verbose")
    with pytest.raises(ConfigError, match="IMAGESTUDIO_LOG_FORMAT"):
        Config(data_dir=tmp_path, log_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="IMAGESTUDIO_SHUTDOWN_GRACE"):
        Config(data_dir=tmp_path, shutdown_grace=-1)


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (("serve", "--port", "0", "--role", "api"), ["--role api", "PostgreSQL"]),
        (("worker",), ["imagestudio worker", "PostgreSQL"]),
    ],
)
def test_team_roles_refuse_a_sqlite_database_with_one_line(
    tmp_path: Path, command: tuple[str, ...], names: list[str]
) -> None:
    done = run_cli(*command, "--data-dir", str(tmp_path / "data"), env={})

    line = assert_one_line_exit_2(done.stderr, done.returncode, *names)
    assert line.startswith("imagestudio: configuration error: ")
    assert not (tmp_path / "data" / "imagestudio.db").exists()  # refused before anything was made
