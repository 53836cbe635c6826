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


def test_the_readme_shows_the_examples_the_tests_run():
    readme = README.read_text()
    for name, fence in (("backup.py", "python"), ("playbook.yml", "yaml")):
        text = (EXAMPLES / name).read_text()
        assert f"```{fence}\n{text}```\n" in readme, f"README.md lacks drp-py/examples/{name}"
