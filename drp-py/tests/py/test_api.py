"""The package as shipped: stubs, py.typed, docstrings, exceptions."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import drp
import drp._drp
from drp import errors

PACKAGE = Path(drp.__file__).parent


def stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((PACKAGE / "_drp.pyi").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_the_wheel_ships_stubs_and_py_typed():
    assert (PACKAGE / "py.typed").is_file()
    native = {n for n, f in vars(drp._drp).items() if callable(f) and not n.startswith("_")}
    assert set(stub_functions()) == native


def test_stub_signatures_match_the_native_functions():
    for name, node in stub_functions().items():
        native = inspect.signature(getattr(drp._drp, name))
        stub_params = [a.arg for a in node.args.args] + [a.arg for a in node.args.kwonlyargs]
        assert stub_params == list(native.parameters), name
        kwonly = {a.arg for a in node.args.kwonlyargs}
        native_kwonly = {p.name for p in native.parameters.values()
                         if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert kwonly == native_kwonly, name


def test_everything_public_has_a_docstring():
    for name in drp.__all__:
        value = getattr(drp, name)
        if callable(value) or inspect.ismodule(value):
            assert (value.__doc__ or "").strip(), name
    for name, node in stub_functions().items():
        assert ast.get_docstring(node), name
    for name in errors.__all__:
        assert (getattr(errors, name).__doc__ or "").strip(), name


def test_every_error_derives_from_drp_error_and_keeps_its_message():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, drp.DrpError)
        e = cls("stack acme: no snapshot", exit_status=3, results=[])
        assert str(e) == "stack acme: no snapshot"
        assert e.exit_status == 3
    assert drp.PlanError("x").problems == []


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_python_example_runs(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(EXAMPLES / "backup.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("healthy: ")
    assert (tmp_path / "restored" / "www" / "index.html").read_text() == "<h1>acme</h1>\n"


def test_the_drill_and_recover_examples_run(demo, tmp_path):
    import subprocess
    import sys

    def example(*args: str) -> list[str]:
        run = subprocess.run([sys.executable, *map(str, args)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout.splitlines()

    demo.ready()
    lines = example(EXAMPLES / "drill.py", demo.plan, "primary-outage")
    assert lines[0].startswith("command `kill -STOP $(cat run/*.pid)`")
    assert lines[0].endswith("on 1 of primary-1; automatic recovery")
    assert lines[1].startswith("drill ") and ": PASS, time to detect " in lines[1]
    assert lines[-1].endswith(" PASS     " + lines[1].split("downtime ")[1]), lines
    assert len([line for line in lines if line.startswith("  ") and " PASS " in line]) == 2

    # The drill left the stacks on the spares: free them, as an operator would, and recover.
    demo.free_spares()
    lines = example(EXAMPLES / "recover.py", demo.plan)
    assert [line.split(" from ")[0] for line in lines[:2]] == ["wave 1: acme", "wave 1: globex"]
    assert lines[2].startswith("acme: recovered, RTO ") and "(PASS)" in lines[2]
    assert lines[3].startswith("globex: recovered, RTO ")
    run = lines[4].split()[1].rstrip(":")
    assert lines[4] == f"run {run}: PASS, report {run}.html"
    assert "<svg" in (tmp_path / f"{run}.html").read_text()


def test_the_readme_shows_the_examples_the_tests_run():
    readme = README.read_text()
    for name, fence in (("backup.py", "python"), ("playbook.yml", "yaml"),
                        ("recover.py", "python"), ("drill.py", "python")):
        text = (EXAMPLES / name).read_text()
        assert f"```{fence}\n{text}```\n" in readme, f"README.md lacks drp-py/examples/{name}"
