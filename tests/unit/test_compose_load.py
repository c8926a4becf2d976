"""Compose loading, pure: discovery, interpolation, .env, -f merge, project names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypr.compose.errors import ComposeError
from hypr.compose.load import find_files, interpolate, load, merge, normalise_project_name, project_name, read_env_file


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A-$B", {"A": "1", "B": "2"}, "1-2"),
        ("${MISSING}", {}, ""),
        ("${MISSING:-dflt}", {}, "dflt"),
        ("${EMPTY:-dflt}", {"EMPTY": ""}, "dflt"),
        ("${EMPTY-dflt}", {"EMPTY": ""}, ""),
        ("${MISSING-dflt}", {}, "dflt"),
        ("${A:+set}", {"A": "1"}, "set"),
        ("${A:-${B}}", {"B": "inner"}, "inner"),
        ("$$HOME and $${X}", {"HOME": "/root"}, "$HOME and ${X}"),
        ("no vars, $ 5", {}, "no vars, $ 5"),
        ("${A:-{braces}}", {}, "{braces}"),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate({"k": [text]}, env) == {"k": [expected]}


def test_required_variable_and_bad_format_name_the_path() -> None:
    with pytest.raises(ComposeError, match=r"services.a.image: required variable TAG is missing a value: need a tag"):
        interpolate({"services": {"a": {"image": "${TAG:?need a tag}"}}}, {})
    with pytest.raises(ComposeError, match=r"services.a.command\[0\]: invalid interpolation format"):
        interpolate({"services": {"a": {"command": ["${oops"]}}}, {})
    with pytest.raises(ComposeError, match=r"invalid interpolation format for '\$\{1x\}'"):
        interpolate({"a": "${1x}"}, {})


def test_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nA=1\nexport B='two words'\nC=\"x\"\nD=plain # trailing\n\n")
    assert read_env_file(tmp_path / ".env") == {"A": "1", "B": "two words", "C": "x", "D": "plain"}
    (tmp_path / ".env").write_text("not a pair\n")
    with pytest.raises(ComposeError, match=r"\.env:1: unexpected line"):
        read_env_file(tmp_path / ".env")


def test_discovery_prefers_hypr_names(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no configuration file provided"):
        find_files([], tmp_path)
    (tmp_path / "compose.yaml").write_text("services: {}")
    assert find_files([], tmp_path) == ((tmp_path / "compose.yaml").resolve(),)
    (tmp_path / "docker-compose.yml").write_text("services: {}")
    (tmp_path / "hypr-compose.yml").write_text("services: {}")
    assert find_files([], tmp_path)[0].name == "hypr-compose.yml"
    with pytest.raises(ComposeError, match="no such file"):
        find_files(["missing.yml"], tmp_path)


def test_merge_rules() -> None:
    base = {"services": {"a": {"image": "x", "ports": ["80"], "command": ["one"], "environment": {"A": "1"}}}}
    over = {"services": {"a": {"ports": ["81", "80"], "command": ["two"], "environment": {"B": "2"}}}}
    assert merge(base, over) == {
        "services": {
            "a": {"image": "x", "ports": ["80", "81"], "command": ["two"], "environment": {"A": "1", "B": "2"}}
        }
    }


def test_load_merges_files_and_uses_dotenv_under_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=fromfile\nOTHER=fromfile\n")
    (tmp_path / "a.yml").write_text("services:\n  s:\n    image: img:${TAG}\n    environment: [X=1, 'Y=${OTHER}']\n")
    (tmp_path / "b.yml").write_text("services:\n  s:\n    environment: {Z: '3'}\n    networks: [n]\n")
    source = load(["a.yml", "b.yml"], tmp_path, {"TAG": "fromenv"})
    service = source.config["services"]["s"]
    assert service["image"] == "img:fromenv"
    assert service["environment"] == {"X": "1", "Y": "fromfile", "Z": "3"}
    assert service["networks"] == {"n": None}
    assert [p.name for p in source.files] == ["a.yml", "b.yml"]


def test_project_name(tmp_path: Path) -> None:
    work = tmp_path / "My.App_Dir"
    work.mkdir()
    (work / "compose.yml").write_text("services: {}\n")
    source = load([], work, {})
    assert project_name(None, source) == "myapp_dir"
    assert project_name("explicit", source) == "explicit"
    (work / "compose.yml").write_text("name: fromfile\nservices: {}\n")
    assert project_name(None, load([], work, {})) == "fromfile"
    assert project_name("wins", load([], work, {})) == "wins"
    with pytest.raises(ComposeError, match="invalid project name 'Bad Name'"):
        project_name("Bad Name", source)
    assert normalise_project_name("-_Hello World") == "helloworld"
