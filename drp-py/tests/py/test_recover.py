"""Recoveries and reports through the Python API, on the real `drp demo` workspace:
local-transport hosts on 127.0.0.2-4, real encrypted backups in a file:// store, the demo's
real HTTP services, compared with what the `drp` command says."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time

import pytest

import drp
from conftest import Ticker, answers
from drp import errors

OTHER_RUN = {
    "run_id": "20261129T101500Z-0badc0de",
    "holder": "ops@elsewhere",
    "pid": 4242,
    "acquired_at": "2026-11-29T10:15:00Z",
}


def lock_plan(demo) -> None:
    """The plan's lock, as another operator's run holds it."""
    (demo.dir / "store" / ".drp" / "lock").write_text(json.dumps(OTHER_RUN))


def test_the_dry_run_is_the_clis_and_changes_nothing(demo):
    at = datetime.datetime.now(datetime.timezone.utc)
    before = sorted(p.name for p in (demo.dir / "store" / ".drp" / "runs").iterdir())
    preview = drp.recover_dry_run(demo.plan, at=at)
    json.dumps(preview)
    assert preview["ready"] is True
    assert [[s["name"] for s in wave] for wave in preview["waves"]] == [["acme", "globex"]]
    acme = preview["waves"][0][0]
    latest = drp.backup_list(plan=demo.plan, stack="acme")[-1]
    assert acme["snapshot"]["id"] == latest["snapshot"]
    assert [s["name"] for s in acme["steps"]][0] == "acquire-host"
    assert "wait-healthy" in [s["name"] for s in acme["steps"]]
    assert acme["hosts"] == ["spare-1 (127.0.0.3)", "spare-2 (127.0.0.4)"]

    # The same JSON as `drp recover --dry-run --json --at` (plus `ready`).
    cli = demo.cli("recover", "--dry-run", "--json", "--plan", str(demo.plan),
                   "--at", at.isoformat())
    assert cli.returncode == 0, cli.stderr
    assert {k: v for k, v in preview.items() if k != "ready"} == json.loads(cli.stdout)
    assert sorted(p.name for p in (demo.dir / "store" / ".drp" / "runs").iterdir()) == before
    assert not (demo.dir / "store" / ".drp" / "lock").exists()

    # Before any backup there is nothing to restore: a result, not an exception.
    old = drp.recover_dry_run(demo.plan, stacks=["globex"], at="2020-01-01T00:00:00Z")
    assert old["ready"] is False
    assert [s["name"] for wave in old["waves"] for s in wave] == ["globex"]
    assert old["waves"][0][0]["snapshot"] is None
    assert old["waves"][0][0]["no_snapshot"]


def test_a_real_recovery_onto_the_spares_is_measured_and_reported(demo):
    demo.ready()
    incident = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    with Ticker() as ticker:
        result = drp.recover(demo.plan, approve=True, incident_start=incident)
    assert ticker.ticks > 20, "the recovery held the GIL"
    json.dumps(result)
    assert result["all_recovered"] is True and result["passed"] is True, result
    assert result["resumed"] is False
    assert set(result["stacks"]) == {"acme", "globex"}
    hosts = set()
    for name, outcome in result["stacks"].items():
        assert outcome["status"] == "recovered"
        hosts.add(outcome["facts"]["host"])
        # The stack's service answers on the spare it was recovered onto.
        assert answers(outcome["facts"]["address"], demo.port(name)), name
    assert hosts == {"spare-1", "spare-2"}

    measured = result["measurements"]
    assert measured["incident_start_given"] is True
    assert [m["stack"] for m in measured["stacks"]] == ["acme", "globex"]
    for m in measured["stacks"]:
        assert m["outcome"] == "recovered"
        assert m["rto_ms"] >= 5000 and m["rto_verdict"] == "PASS"
        assert m["rpo_ms"] is not None and m["rpo_verdict"] == "PASS"
    assert result["rto_ms"] == max(m["rto_ms"] for m in measured["stacks"])

    journal = [json.loads(line) for line in open(result["local_journal"])]
    assert journal[0]["event"] == "run_started" and journal[0]["run"] == result["run_id"]
    assert journal[-1]["event"] == "run_measured"
    assert not (demo.dir / "store" / ".drp" / "lock").exists()

    # Its report, as `drp report` makes it, in every format.
    data = json.loads(drp.report(demo.plan, result["run_id"], format="json"))
    assert data["run"] == result["run_id"] and data["passed"] is True
    assert [s["rto"]["actual_ms"] for s in data["stacks"]] == [
        m["rto_ms"] for m in measured["stacks"]]
    md = drp.report(demo.plan, "latest")
    assert md.startswith(f"# Recovery report: run {result['run_id']}")
    assert "**Result: PASS**" in md
    cli = demo.cli("report", result["run_id"], "--plan", str(demo.plan))
    assert cli.returncode == 0 and cli.stdout == md
    out = demo.dir / "reports" / "run.html"
    html = drp.report(demo.plan, result["run_id"], format="html", out=out)
    assert out.read_text() == html and '<rect class="bar' in html


def test_resume_runs_only_what_did_not_succeed(demo):
    demo.ready()
    # Another run holds spare-2: one stack gets spare-1, the other finds no free spare.
    lease = demo.dir / "store" / ".drp" / "leases" / "spare-2.json"
    lease.write_text(json.dumps({"host": "spare-2", "run_id": OTHER_RUN["run_id"],
                                 "stack": "other", "acquired_at": "2026-11-29T10:15:00Z"}))
    first = drp.recover(demo.plan, approve=True)
    outcomes = {name: o["status"] for name, o in first["stacks"].items()}
    assert sorted(outcomes.values()) == ["failed", "recovered"], first["stacks"]
    failed = next(name for name, status in outcomes.items() if status == "failed")
    assert first["stacks"][failed]["step"] == "acquire-host"
    assert first["all_recovered"] is False and first["passed"] is False
    assert first["rto_ms"] is None

    # The operator frees spare-2 and resumes the run: only the failed stack runs again.
    lease.unlink()
    second = drp.recover(demo.plan, approve=True, resume=first["run_id"])
    assert second["run_id"] == first["run_id"] and second["resumed"] is True
    assert second["all_recovered"] is True, second["stacks"]
    assert second["stacks"][failed]["facts"]["host"] == "spare-2"
    events = [json.loads(line) for line in open(second["local_journal"])]
    reused = {e["stack"] for e in events if e["event"] == "step_reused"}
    assert reused == set(outcomes) - {failed}, reused


def test_a_locked_plan_raises_locked_error_with_the_holder(demo):
    lock_plan(demo)
    with pytest.raises(errors.LockedError) as caught:
        drp.recover(demo.plan, approve=True)
    error = caught.value
    assert isinstance(error, drp.DrpError)
    assert (error.run_id, error.holder, error.pid) == (
        OTHER_RUN["run_id"], OTHER_RUN["holder"], OTHER_RUN["pid"])
    assert str(error) == demo.cli_error("recover", "--plan", str(demo.plan), "--yes")
    assert "--break-lock" in str(error)

    # Only the run holding the lock may take it over.
    with pytest.raises(errors.RunNotFound):
        drp.recover(demo.plan, resume="20261129T000000Z-00000000")
    assert drp.recover_break_lock(demo.plan) == OTHER_RUN
    assert drp.recover_break_lock(demo.plan) is None
    assert not (demo.dir / "store" / ".drp" / "lock").exists()


def test_each_recovery_error_kind_has_its_class_and_the_clis_message(demo, tmp_path):
    plan = str(demo.plan)
    # A run the store does not have.
    with pytest.raises(errors.RunNotFound) as caught:
        drp.recover(plan, resume="20261129T000000Z-00000000")
    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == demo.cli_error(
        "recover", "--plan", plan, "--resume", "20261129T000000Z-00000000")
    # Not a run id.
    with pytest.raises(errors.InvalidArgument):
        drp.recover(plan, resume="../etc")
    # A stack the plan lacks.
    with pytest.raises(errors.PlanError) as caught:
        drp.recover(plan, stacks=["nope"])
    assert str(caught.value) == demo.cli_error("recover", "--plan", plan, "--stack", "nope",
                                               "--yes")
    with pytest.raises(errors.PlanError):
        drp.recover_dry_run(plan, stacks=["nope"])
    # Times: RFC 3339 text or an aware datetime.
    with pytest.raises(errors.InvalidArgument, match="incident_start"):
        drp.recover(plan, incident_start="yesterday")
    with pytest.raises(errors.InvalidArgument, match="timezone"):
        drp.recover_dry_run(plan, at=datetime.datetime(2026, 11, 29, 10, 0))

    # The demo's drill recovered through a run; resuming it with a changed plan is refused.
    drill = drp.drill_history(plan)[0]
    run_id = drill["recovery_runs"][0]
    demo.plan.write_text(demo.plan.read_text() + "\n# changed\n")
    with pytest.raises(errors.ResumeError) as caught:
        drp.recover(plan, resume=run_id)
    assert caught.value.run_id == run_id
    assert caught.value.plan_digest_then != caught.value.plan_digest_now
    assert str(caught.value) == demo.cli_error("recover", "--plan", plan, "--resume", run_id)
    assert not (demo.dir / "store" / ".drp" / "lock").exists(), "the lock was given back"

    # The local journal copy cannot be created.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(errors.DrpIOError):
        drp.recover(plan, local_journal=blocker / "run.jsonl")
    assert not (demo.dir / "store" / ".drp" / "lock").exists(), "the lock was given back"

    # A journal event that does not parse.
    event = next((demo.dir / "store" / ".drp" / "runs" / run_id / "events").iterdir())
    event.write_text("not json")
    with pytest.raises(errors.JournalError) as caught:
        drp.report(plan, run_id)
    assert str(caught.value) == demo.cli_error("report", run_id, "--plan", plan)


def test_report_errors(demo):
    plan = str(demo.plan)
    with pytest.raises(errors.RunNotFound) as caught:
        drp.report(plan, "20261129T000000Z-00000000")
    assert str(caught.value) == demo.cli_error("report", "20261129T000000Z-00000000",
                                               "--plan", plan)
    with pytest.raises(errors.InvalidArgument, match="md, html or json"):
        drp.report(plan, "latest", format="pdf")


def test_approval_gates_need_approve(demo):
    demo.ready()
    text = demo.plan.read_text().replace(
        '[stacks.acme]\n', '[stacks.acme]\napprove_before_start = true\n', 1)
    demo.plan.write_text(text)
    result = drp.recover(demo.plan, stacks=["acme"])
    acme = result["stacks"]["acme"]
    assert acme["status"] == "failed", acme
    assert "approve=True" in acme["error"]


def test_ctrl_c_leaves_a_recovery_resumable(demo, tmp_path):
    """SIGINT stops a recovery where it is, as killing `drp recover` does: the lock stays
    with the run, whose id the KeyboardInterrupt carries, and resuming finishes it."""
    demo.ready()
    # acme's restore command waits until the test has interrupted the call.
    waiting, gate = tmp_path / "waiting", tmp_path / "interrupted"
    wait = f"touch {waiting}; while [ ! -e {gate} ]; do sleep 0.1; done"
    demo.plan.write_text(demo.plan.read_text().replace(
        "[stacks.acme]\n", f'[stacks.acme]\nrestore_commands = ["{wait}"]\n', 1))
    script = tmp_path / "recover.py"
    script.write_text(
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import drp\n"
        "try:\n"
        f"    drp.recover({str(demo.plan)!r}, approve=True)\n"
        "except KeyboardInterrupt as e:\n"
        "    print('interrupted', e.run_id, flush=True)\n"
        "    sys.exit(130)\n")
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not waiting.exists():
        assert time.monotonic() < deadline and child.poll() is None, "the run did not start"
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    gate.write_text("")
    assert child.returncode == 130, out
    run_id = out.split()[-1]
    lock = demo.dir / "store" / ".drp" / "lock"
    assert json.loads(lock.read_text())["run_id"] == run_id, "the run keeps its lock"
    with pytest.raises(errors.LockedError):
        drp.recover(demo.plan, approve=True)

    resumed = drp.recover(demo.plan, approve=True, resume=run_id)
    assert resumed["run_id"] == run_id and resumed["all_recovered"] is True, resumed["stacks"]
    assert not lock.exists()
