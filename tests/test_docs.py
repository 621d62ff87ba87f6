"""Keep the README, CI and compose file honest."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from backchannel import config
from backchannel.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", README)


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one() -> None:
    first, second = readme_commands()[:2]
    assert "backchannel demo" in first
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci.splitlines()


def test_every_setting_is_documented() -> None:
    for setting in config.SETTINGS:
        assert f"`{setting.env}`" in README, setting.env
        assert setting.help in README, setting.name


def test_every_command_is_documented() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"### `backchannel {name}" in README, name


def test_compose_file_runs_two_instances_behind_a_proxy_with_postgres_and_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "proxy"} <= services.keys()
    apps = [s for s in services.values() if "build" in s]
    assert len(apps) == 2, "two app instances"
    for name, service in services.items():
        assert "healthcheck" in service, name
    for app in apps:
        env = app["environment"]
        assert env["BACKCHANNEL_DB"].startswith("postgresql://")
        assert env["BACKCHANNEL_REDIS"].startswith("redis://")
        assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert apps[0]["environment"]["BACKCHANNEL_SECRET"] == apps[1]["environment"]["BACKCHANNEL_SECRET"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "app1:8080" in nginx and "app2:8080" in nginx and "Upgrade" in nginx
