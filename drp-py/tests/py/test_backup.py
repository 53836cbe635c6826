"""Backups through the Python API against a real file:// store and real OpenPGP keys."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

import drp
from conftest import same_tree
from drp import errors


def create(store: str, keys: Path, site: Path, **kwargs):  # type: ignore[no-untyped-def]
    return drp.backup_create(
        store,
        "acme",
        {"www": site, "db": 'cmd:echo "CREATE TABLE customers (id int);"'},
        [keys / "acme.pub.asc"],
        **kwargs,
    )


def test_round_trip_create_list_verify_restore(store, keys, site, tmp_path):
    created = create(store, keys, site, sign_with=keys / "ops.sec.asc")
    json.dumps(created)  # plain data
    assert created["stack"] == "acme"
    sources = {s["name"]: s for s in created["sources"]}
    assert set(sources) == {"www", "db"}
    assert sources["www"]["kind"] == "directory"
    assert sources["db"]["kind"] == "command"
    assert sources["db"]["plain_bytes"] == len(b'CREATE TABLE customers (id int);\n')
    assert created["plain_bytes"] == sum(s["plain_bytes"] for s in created["sources"])
    assert created["stored_bytes"] > 0
    assert created["signer"]

    listed = drp.backup_list(store, "acme")
    assert [s["snapshot"] for s in listed] == [created["snapshot"]]
    assert listed[0]["signed"] is True
    assert listed[0]["sources"] == created["sources"]

    verified = drp.backup_verify(
        store, "acme", keys / "acme.sec.asc", snapshot="all", trust=[keys / "ops.pub.asc"]
    )
    assert [(v["snapshot"], v["ok"]) for v in verified] == [(created["snapshot"], True)]
    assert verified[0]["verified_signer"]
    # Which key it needs: acme's, by fingerprint.
    acme = [k["fingerprint"] for k in drp.keys_list(keys) if k["name"] == "acme"]
    assert verified[0]["recipients"] == acme

    report = drp.backup_restore(
        store, "acme", keys / "acme.sec.asc", to=tmp_path / "restored",
        trust=[keys / "ops.pub.asc"],
    )
    assert report["snapshot"] == created["snapshot"]
    same_tree(site, tmp_path / "restored" / "www")
    assert (tmp_path / "restored" / "db").read_bytes() == b"CREATE TABLE customers (id int);\n"


def test_restore_one_source_into_a_command(store, keys, site, tmp_path):
    create(store, keys, site)
    out = tmp_path / "tables.count"
    report = drp.backup_restore(
        store, "acme", keys / "acme.sec.asc", sources=["db"],
        pipe_to=f"grep -c CREATE > {out}",
    )
    assert [s["name"] for s in report["sources"]] == ["db"]
    assert report["sources"][0]["path"] is None
    assert out.read_text() == "1\n"


def test_sources_as_a_list_of_specs(store, keys, site):
    created = drp.backup_create(store, "acme", [f"www={site}"], [keys / "acme.pub.asc"])
    assert [s["name"] for s in created["sources"]] == ["www"]


def test_passphrase_comes_from_the_named_variable(store, keys, site, tmp_path):
    drp.backup_create(store, "locked", {"www": site}, [keys / "locked.pub.asc"])
    with pytest.raises(errors.DrpKeyError, match="passphrase-protected"):
        drp.backup_restore(store, "locked", keys / "locked.sec.asc", to=tmp_path / "a")
    with pytest.raises(errors.DrpKeyError, match="DRP_TEST_UNSET_VARIABLE is not set"):
        drp.backup_restore(
            store, "locked", keys / "locked.sec.asc", to=tmp_path / "a",
            passphrase_env="DRP_TEST_UNSET_VARIABLE",
        )
    secret = tmp_path / "passphrase"
    secret.write_text("wrong horse\n")
    with pytest.raises(errors.DrpKeyError, match="wrong passphrase"):
        drp.backup_restore(
            store, "locked", keys / "locked.sec.asc", to=tmp_path / "a", passphrase_file=secret
        )
    assert not (tmp_path / "a").exists()
    drp.backup_restore(
        store, "locked", keys / "locked.sec.asc", to=tmp_path / "b",
        passphrase_env="DRP_TEST_PASSPHRASE",
    )
    same_tree(site, tmp_path / "b" / "www")


def test_wrong_key_has_the_cli_message_and_status(store, keys, site, tmp_path, drp_bin):
    create(store, keys, site)
    with pytest.raises(errors.DrpError) as caught:
        drp.backup_restore(store, "acme", keys / "globex.sec.asc", to=tmp_path / "py")
    # Another customer's key: the operator's mistake (exit 1), not bad data (exit 3).
    assert isinstance(caught.value, errors.DrpKeyError)
    assert caught.value.exit_status == 1
    assert not (tmp_path / "py" / "www").exists()
    cli = subprocess.run(
        [drp_bin, "backup", "restore", "--store", store, "--stack", "acme",
         "--key", str(keys / "globex.sec.asc"), "--to", str(tmp_path / "cli")],
        capture_output=True, text=True,
    )
    assert cli.stderr.strip().splitlines()[-1] == f"drp: error: {caught.value}"
    assert cli.returncode == caught.value.exit_status
    assert "none of the given secret keys" in str(caught.value)


def test_tampered_data_is_an_integrity_error_and_the_target_is_left_alone(
    store, keys, site, tmp_path
):
    created = create(store, keys, site)
    www = next(s for s in created["sources"] if s["name"] == "www")
    obj = Path(store.removeprefix("file://")) / www["object"]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))

    with pytest.raises(errors.IntegrityError) as caught:
        drp.backup_verify(store, "acme", keys / "acme.sec.asc")
    assert caught.value.exit_status == 3
    assert created["snapshot"] in str(caught.value)
    assert [r["ok"] for r in caught.value.results] == [False]

    with pytest.raises(errors.IntegrityError):
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "target")
    target = tmp_path / "target"
    assert not target.exists() or not any(target.iterdir())


def test_verify_all_reports_each_snapshot(store, keys, site):
    first = create(store, keys, site)
    second = create(store, keys, site)
    obj = Path(store.removeprefix("file://")) / first["sources"][0]["object"]
    obj.write_bytes(obj.read_bytes()[:-10])
    with pytest.raises(errors.IntegrityError, match="1 snapshot\\(s\\) failed verification") as caught:
        drp.backup_verify(store, "acme", keys / "acme.sec.asc", snapshot="all")
    outcomes = {r["snapshot"]: r for r in caught.value.results}
    assert outcomes[second["snapshot"]]["ok"] is True
    assert outcomes[first["snapshot"]]["ok"] is False
    assert outcomes[first["snapshot"]]["error_class"] == "IntegrityError"


def test_each_error_kind_has_its_class(store, keys, site, tmp_path):
    with pytest.raises(errors.SnapshotNotFound) as caught:
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "x")
    assert isinstance(caught.value, LookupError)
    create(store, keys, site)
    with pytest.raises(errors.SnapshotNotFound):
        drp.backup_verify(store, "acme", keys / "acme.sec.asc", snapshot="19990101")
    with pytest.raises(errors.SourceNotFound):
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "x",
                           sources=["nope"])
    with pytest.raises(errors.InvalidArgument) as caught:
        drp.backup_create(store, "no/slash", {"www": site}, [keys / "acme.pub.asc"])
    assert isinstance(caught.value, ValueError)
    with pytest.raises(errors.InvalidArgument):
        drp.backup_restore(store, "acme", keys / "acme.sec.asc")  # neither to nor pipe_to
    with pytest.raises(errors.InvalidArgument, match="keeps nothing"):
        drp.backup_prune(store, "acme")
    with pytest.raises(errors.SourceError, match="source www"):
        drp.backup_create(store, "acme", {"www": tmp_path / "missing"}, [keys / "acme.pub.asc"])
    with pytest.raises(errors.SourceError):
        drp.backup_create(store, "acme", {"db": "cmd:exit 3"}, [keys / "acme.pub.asc"])
    with pytest.raises(errors.DrpKeyError):
        drp.backup_create(store, "acme", {"www": site}, [tmp_path / "missing.pub.asc"])
    with pytest.raises(errors.StoreError):
        drp.backup_list("ftp://example.invalid/x", "acme")
    drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "twice")
    with pytest.raises(errors.TargetError):
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "twice")
    for cls in (errors.SnapshotNotFound, errors.IntegrityError, errors.PlanError,
                errors.DrpKeyError, errors.StoreError, errors.TransportError,
                errors.LockedError, errors.ProbeSpecError):
        assert issubclass(cls, drp.DrpError)
    # A failed backup committed nothing.
    assert len(drp.backup_list(store, "acme")) == 1


def test_preview_checks_everything_and_writes_nothing(keys, site, tmp_path):
    store = (tmp_path / "never-created").as_uri()
    preview = drp.backup_preview(
        store, "acme", {"www": site, "db": "cmd:pg_dump acme"}, [keys / "acme.pub.asc"],
        sign_with=keys / "ops.sec.asc",
    )
    assert preview["sources"] == [
        {"name": "www", "kind": "directory", "path": str(site)},
        {"name": "db", "kind": "command", "command": "pg_dump acme"},
    ]
    assert len(preview["recipients"]) == 1 and preview["signer"]
    assert not (tmp_path / "never-created").exists()
    with pytest.raises(errors.SourceError):
        drp.backup_preview(store, "acme", {"www": tmp_path / "missing"}, [keys / "acme.pub.asc"])


def test_prune_keeps_by_rule(store, keys, site):
    first = create(store, keys, site)
    second = create(store, keys, site)
    dry = drp.backup_prune(store, "acme", keep_last=1, dry_run=True)
    assert dry["dry_run"] is True
    assert {d["snapshot"]: d["keep"] for d in dry["decisions"]} == {
        second["snapshot"]: True, first["snapshot"]: False,
    }
    assert len(drp.backup_list(store, "acme")) == 2
    done = drp.backup_prune(store, "acme", keep_last=1)
    assert done["removed_objects"]
    assert [s["snapshot"] for s in drp.backup_list(store, "acme")] == [second["snapshot"]]


def test_a_backup_does_not_hold_the_gil(store, keys, tmp_path):
    """The dump command waits for a file that only this (Python) thread writes, once it has
    seen the command start: with the GIL held by the backup call, this thread could not run,
    the command would give up after its bound and the backup would fail."""
    started, go = tmp_path / "started", tmp_path / "go"
    command = (
        f"cmd:touch {started}; i=0; while [ ! -e {go} ]; do i=$((i+1)); "
        f"[ $i -gt 1200 ] && exit 1; sleep 0.1; done; echo dumped"
    )
    outcome = {}

    def backup() -> None:
        try:
            outcome["result"] = drp.backup_create(store, "acme", {"db": command},
                                                  [keys / "acme.pub.asc"])
        except Exception as e:  # noqa: BLE001 - reported below
            outcome["error"] = e

    thread = threading.Thread(target=backup)
    thread.start()
    while not started.exists() and thread.is_alive():
        threading.Event().wait(0.01)
    go.touch()
    thread.join()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["sources"][0]["plain_bytes"] == len(b"dumped\n")


def test_keys_are_listed(keys):
    listed = {k["name"]: k for k in drp.keys_list(keys)}
    assert {"acme", "globex", "ops", "locked"} <= set(listed)
    assert listed["acme"]["has_secret"] is True
    with pytest.raises(errors.DrpKeyError, match="already exists"):
        drp.keys_generate("acme", keys)


def test_ctrl_c_stops_a_backup_and_leaves_no_snapshot(store, keys, tmp_path):
    """SIGINT during a call raises KeyboardInterrupt in the calling (main) thread, as it
    stops the drp command; the interrupted backup leaves no snapshot."""
    import signal
    import sys

    started = tmp_path / "started"
    script = tmp_path / "interrupted.py"
    script.write_text(
        "import drp, signal, sys\n"
        # A shell's background job starts with SIGINT ignored, and Python then keeps it
        # ignored: install the handler an interactive Python has.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        f"    drp.backup_create({store!r}, 'acme',\n"
        f"        {{'db': 'cmd:touch {started}; sleep 600; echo never'}},\n"
        f"        [{str(keys / 'acme.pub.asc')!r}])\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
        "    sys.exit(42)\n"
    )
    # Its own process group, so that the dump command (which only Python is told to stop
    # here, unlike a terminal's Ctrl-C that reaches the whole group) is cleaned up after.
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        while not started.exists():
            assert child.poll() is None, "the backup ended before its source started"
            threading.Event().wait(0.05)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
    assert (child.returncode, out.strip()) == (42, "interrupted")
    assert drp.backup_list(store, "acme") == []
