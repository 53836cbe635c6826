"""Plans and probes through the Python API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import drp
from drp import errors

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plan.toml"


def broken_plan(tmp_path: Path) -> tuple[Path, int]:
    """The example plan with an unknown key inserted; returns it and the key's line."""
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith('url = "s3://'))
    lines.insert(at + 1, "  retension = 3\n")
    path = tmp_path / "plan.toml"
    path.write_text("".join(lines))
    for sub in ("scripts", "playbooks", "keys", "ssh"):
        if (EXAMPLE.parent / sub).is_dir():
            shutil.copytree(EXAMPLE.parent / sub, tmp_path / sub)
    return path, at + 2


def test_the_example_plan_loads(tmp_path):
    plan = drp.load_plan(EXAMPLE, files=False)
    json.dumps(plan)
    assert plan["name"] == "production"
    assert plan["store"] == "s3://drp-backups/prod"
    assert [s["name"] for s in plan["stacks"]] == ["acme-db", "acme-web", "globex-crm"]
    assert all(w["severity"] == "warning" for w in plan["warnings"])
    checked = drp.check_plan(EXAMPLE, files=False)
    assert checked["valid"] is True and checked["errors"] == 0


def test_a_bad_plan_raises_plan_error_with_positions(tmp_path):
    path, line = broken_plan(tmp_path)
    with pytest.raises(errors.PlanError) as caught:
        drp.load_plan(path, files=False)
    error = caught.value
    assert error.exit_status == 1
    assert str(error).startswith(f"{path} is not a valid plan")
    unknown = [p for p in error.problems if p["kind"] == "unknown_key"]
    assert len(unknown) == 1, error.problems
    problem = unknown[0]
    assert (problem["line"], problem["column"]) == (line, 3)
    assert problem["severity"] == "error"
    assert "retension" in problem["message"]
    assert problem["text"] == f"{path}:{line}:3: error: {problem['message']}"
    assert problem["text"] in str(error)

    checked = drp.check_plan(path, files=False)
    assert checked["valid"] is False
    assert checked["errors"] == len(error.problems)
    assert [p for p in checked["problems"] if p["kind"] == "unknown_key"] == unknown


def test_a_missing_plan_is_a_problem_without_position(tmp_path):
    checked = drp.check_plan(tmp_path / "nope.toml")
    assert checked["valid"] is False
    assert checked["problems"][0]["line"] is None
    assert checked["problems"][0]["column"] is None
    with pytest.raises(errors.PlanError, match="cannot read the plan"):
        drp.load_plan(tmp_path / "nope.toml")


def test_http_probe_against_a_real_server(web):
    result = drp.probe({
        "kind": "http",
        "url": f"{web}/health.json",
        "conditions": ["[STATUS] == 200", "[BODY].status == UP", "len([BODY].items) > 0"],
        "timeout": "5s",
    })
    json.dumps(result)
    assert result["healthy"] is True, result["message"]
    assert result["kind"] == "http"
    assert [(c["condition"], c["ok"]) for c in result["conditions"]] == [
        ("[STATUS] == 200", True), ("[BODY].status == UP", True), ("len([BODY].items) > 0", True),
    ]
    assert result["observation"]["status"] == 200

    missing = drp.probe({"kind": "http", "url": f"{web}/missing.json",
                         "conditions": ["[STATUS] == 200"]})
    assert missing["healthy"] is False
    assert "404" in missing["message"]


def test_tcp_probe_and_wait(web):
    port = int(web.rsplit(":", 1)[1])
    result = drp.probe({"kind": "tcp", "host": "127.0.0.1", "port": port}, wait="10s")
    assert result["healthy"] is True, result["message"]


def test_command_probe_unhealthy_is_a_result():
    result = drp.probe({"kind": "command", "command": "exit 4"})
    assert result["healthy"] is False
    assert result["observation"]["exit_code"] == 4
    assert result["message"].startswith("`exit 4` exited with status 4")


def test_bad_probe_specs_raise_probe_spec_error():
    with pytest.raises(errors.ProbeSpecError, match="column") as caught:
        drp.probe({"kind": "http", "url": "http://127.0.0.1:1/", "conditions": ["[STATUS] == )"]})
    assert caught.value.exit_status == 2
    assert isinstance(caught.value, ValueError)
    with pytest.raises(errors.ProbeSpecError, match="urll"):
        drp.probe({"kind": "http", "urll": "http://127.0.0.1:1/"})
    with pytest.raises(errors.ProbeSpecError):
        drp.probe({"kind": "carrier-pigeon"})
