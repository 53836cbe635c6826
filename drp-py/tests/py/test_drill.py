"""Drills through the Python API, on the real `drp demo` workspace: real faults (the
primary's real HTTP services frozen with SIGSTOP), real detection by probes, real recovery
onto the spares, compared with what the `drp` command says."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import drp
from conftest import Ticker, answers, wait_until
from drp import errors

# Surprise mode: drp injects and waits for the team, which does not come here.
SURPRISE = """
[scenarios.{name}]
mode = "surprise"
targets = {{ hosts = ["primary-1"] }}
fault = {{ kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid)" }}
duration = "{duration}"
"""


def test_a_drill_detects_recovers_reverts_and_is_reported(demo):
    demo.ready()
    earlier = drp.drill_history(demo.plan)
    with Ticker() as ticker:
        record = drp.drill_run(demo.plan, "primary-outage")
    assert ticker.ticks > 20, "the drill held the GIL"
    json.dumps(record)
    assert record["verdict"] == "PASS" and record["passed"] is True, record["checks"]
    assert record["state"] == "finished"
    assert 0 < record["time_to_detect_ms"] <= record["downtime_ms"]
    assert record["marks"]["detected_by_probe"]["source"].startswith("probe ")
    assert record["recovery_runs"] == [f"{record['drill']}-recovery"]
    assert [t["host"] for t in record["targets"]] == ["primary-1"]
    assert record["targets"][0]["reverted_by"] == "drp"
    healthy_on = sorted(s["healthy_on"] for s in record["stack_results"])
    assert healthy_on == ["127.0.0.3 (spare-1)", "127.0.0.4 (spare-2)"], record["stack_results"]
    assert all(s["rto_ms"] and s["rpo_ms"] is not None for s in record["stack_results"])
    # The fault is reverted: the primary answers again.
    for stack in ("acme", "globex"):
        assert answers("127.0.0.2", demo.port(stack))
    html = open(record["report"]).read()
    assert record["report"] == str(demo.dir / ".drp" / "drills" / f"{record['drill']}.html")
    assert "<svg" in html and "PASS" in html

    # Kept in the store: the history has it, with the same measurements.
    history = drp.drill_history(demo.plan)
    assert [d["drill"] for d in history] == [d["drill"] for d in earlier] + [record["drill"]]
    kept = history[-1]
    for key in ("verdict", "passed", "time_to_detect_ms", "downtime_ms", "marks", "checks"):
        assert kept[key] == record[key], key
    cli = demo.cli("drill", "history", "--plan", str(demo.plan), "--json")
    rows = json.loads(cli.stdout)
    assert [(r["drill"], r["verdict"], r["time_to_detect_ms"], r["downtime_ms"]) for r in rows] \
        == [(d["drill"], d["verdict"], d["time_to_detect_ms"], d["downtime_ms"]) for d in history]

    # Its report, in every format, as `drp report` renders it.
    md = drp.report(demo.plan, record["drill"])
    assert md.startswith(f"# Drill report: {record['drill']}")
    assert "| T3 every stack healthy | T0+" in md and "## Recovery run" in md
    assert md == demo.cli("report", record["drill"], "--plan", str(demo.plan)).stdout
    data = json.loads(drp.report(demo.plan, record["drill"], format="json"))
    assert data["drill"]["drill"] == record["drill"] and data["verdict"] == "PASS"
    assert data["downtime_ms"] == record["downtime_ms"]
    assert "<svg" in drp.report(demo.plan, record["drill"], format="html")


def test_the_preview_injects_nothing(demo):
    demo.ready()
    before = sorted((demo.dir / "store" / ".drp" / "drills").iterdir())
    preview = drp.drill_preview(demo.plan, "primary-outage")
    json.dumps(preview)
    assert preview["mode"] == "automatic"
    assert preview["fault"] == "command `kill -STOP $(cat run/*.pid)` " \
        "(revert `kill -CONT $(cat run/*.pid)`)"
    assert preview["candidates"] == [
        {"host": "primary-1", "address": "127.0.0.2", "datacenter": "primary"}]
    assert preview["hosts_hit"] == 1 and preview["blast_radius"] == "all"
    assert preview["stacks"] == ["acme", "globex"]
    assert (preview["duration_ms"], preview["detect_within_ms"]) == (120_000, 10_000)
    assert sorted((demo.dir / "store" / ".drp" / "drills").iterdir()) == before
    assert answers("127.0.0.2", demo.port("acme"))


def test_a_drill_that_cannot_start_raises_drill_error(demo):
    """The demo's services are stopped: the steady state does not hold, nothing is
    injected, and the drill's record says so."""
    demo.add_scenario("""
[scenarios.quick]
mode = "automatic"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "touch injected", revert = "rm -f injected" }
duration = "1m"
steady_state_within = "2s"
""")
    marker = demo.dir / "hosts" / "primary-1" / "injected"
    with pytest.raises(errors.DrillError) as caught:
        drp.drill_run(demo.plan, "quick")
    error = caught.value
    assert error.stage == "steady_state"
    assert [p.split(":")[0] for p in error.problems] == ["acme probe http", "globex probe http"]
    assert str(error).startswith(
        "the steady state does not hold, nothing was injected: acme probe http")
    assert not marker.exists()
    record = drp.drill_history(demo.plan)[-1]
    assert record["drill"] == error.drill
    assert (record["state"], record["verdict"], record["passed"]) == (
        "not_started", "NOT STARTED", False)
    cli = demo.cli_error("drill", "run", "--plan", str(demo.plan), "--yes", "--scenario",
                         "quick")
    assert cli.split(": acme probe http")[0] == str(error).split(": acme probe http")[0]


def test_another_drill_running_raises_locked_error(demo):
    held = {"run_id": "20261129T101500Z-0badc0de", "holder": "ops@elsewhere", "pid": 7,
            "acquired_at": "2026-11-29T10:15:00Z", "scenario": "primary-outage"}
    (demo.dir / "store" / ".drp" / "drill-lock.json").write_text(json.dumps(held))
    with pytest.raises(errors.LockedError) as caught:
        drp.drill_run(demo.plan, "primary-outage")
    error = caught.value
    assert (error.drill, error.scenario, error.holder) == (
        held["run_id"], "primary-outage", "ops@elsewhere pid 7")
    assert str(error) == demo.cli_error("drill", "run", "--plan", str(demo.plan), "--yes",
                                        "--scenario", "primary-outage")


def test_drill_errors_of_plans_and_ids(demo):
    plan = str(demo.plan)
    with pytest.raises(errors.PlanError) as caught:
        drp.drill_run(plan, "meteor")
    assert str(caught.value) == demo.cli_error("drill", "run", "--plan", plan, "--yes",
                                               "--scenario", "meteor")
    with pytest.raises(errors.PlanError):
        drp.drill_preview(plan, "meteor")
    with pytest.raises(errors.RunNotFound) as caught:
        drp.drill_revert(plan, "20261129T000000Z-00000000")
    assert str(caught.value) == demo.cli_error("drill", "revert", "20261129T000000Z-00000000",
                                               "--plan", plan)
    with pytest.raises(errors.InvalidArgument):
        drp.drill_revert(plan, "../x")


def run_in_child(demo, tmp_path, scenario: str) -> subprocess.Popen:
    """drill_run in another Python process; it prints `interrupted DRILL_ID` if interrupted."""
    script = tmp_path / "drill.py"
    script.write_text(
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import drp\n"
        "try:\n"
        f"    record = drp.drill_run({str(demo.plan)!r}, {scenario!r})\n"
        "except KeyboardInterrupt as e:\n"
        "    print('interrupted', e.drill, flush=True)\n"
        "    sys.exit(130)\n")
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)


def wait_for_injection(demo, child: subprocess.Popen) -> dict:
    """The child's drill record, once its fault is in place."""
    drills = demo.dir / "store" / ".drp" / "drills"
    earlier = set(drills.iterdir())
    found: dict = {}

    def injected() -> bool:
        assert child.poll() is None, "the drill ended early"
        for path in set(drills.iterdir()) - earlier:
            try:
                record = json.loads(path.read_text())
            except ValueError:
                continue
            if record["marks"]["injected"]:
                found.update(record)
                return True
        return False

    wait_until(injected, "the fault to be injected", timeout=120)
    return found


def test_ctrl_c_aborts_a_drill_and_reverts_its_fault(demo, tmp_path):
    demo.ready()
    demo.add_scenario(SURPRISE.format(name="interrupted", duration="2m"))
    child = run_in_child(demo, tmp_path, "interrupted")
    record = wait_for_injection(demo, child)
    assert not answers("127.0.0.2", demo.port("acme")), "the services are frozen"
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 130, out
    assert out.split() == ["interrupted", record["drill"]]
    assert time.monotonic() - started < 30, "aborted at once, not at the end of the drill"
    assert answers("127.0.0.2", demo.port("acme")), "the fault was reverted"
    kept = drp.drill_history(demo.plan)[-1]
    assert kept["drill"] == record["drill"]
    assert (kept["state"], kept["verdict"]) == ("aborted", "ABORTED")
    assert kept["abort_reason"] == "interrupted by the operator"
    assert not (demo.dir / "store" / ".drp" / "drill-lock.json").exists()


def test_drill_revert_closes_a_drill_whose_process_died(demo, tmp_path):
    demo.ready()
    demo.add_scenario(SURPRISE.format(name="killed", duration="20s"))
    child = run_in_child(demo, tmp_path, "killed")
    record = wait_for_injection(demo, child)
    child.kill()  # SIGKILL: no chance to revert
    child.wait()
    assert not answers("127.0.0.2", demo.port("acme"))

    reverted = drp.drill_revert(demo.plan, record["drill"])
    json.dumps(reverted)
    assert reverted["drill"] == record["drill"]
    assert (reverted["state"], reverted["verdict"]) == ("aborted", "ABORTED")
    assert reverted["targets"][0]["reverted_by"] == "hand (drp drill revert)"
    assert reverted["marks"]["reverted"]
    assert answers("127.0.0.2", demo.port("acme"))
    assert not (demo.dir / "store" / ".drp" / "drill-lock.json").exists()
    # Safe to repeat.
    assert drp.drill_revert(demo.plan, record["drill"])["state"] == "aborted"
