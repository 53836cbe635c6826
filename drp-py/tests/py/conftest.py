"""Fixtures of the drp Python tests: real keys, a real file:// store, a real HTTP server.

Run by drp-py/tests/python.rs (part of `cargo test --workspace`), which builds the wheel,
installs it into a fresh virtual environment and sets:

- DRP_BIN: the `drp` command, to compare the package's messages with the CLI's;
- DRP_ANSIBLE_PLAYBOOK, DRP_ANSIBLE_DOC: ansible-core's commands;
- DRP_COLLECTIONS: the directory holding `ansible_collections/drp/ops`.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator

import pytest

import drp


def required_env(name: str) -> str:
    """An environment variable the harness must set: a missing one fails the test."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test -p drp-py`")
    return value


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """keys/acme.{pub,sec}.asc, keys/globex.* (another customer), keys/ops.* (signing) and
    keys/locked.* (passphrase-protected, passphrase in $DRP_TEST_PASSPHRASE)."""
    directory = tmp_path_factory.mktemp("keys")
    for name in ("acme", "globex", "ops"):
        drp.keys_generate(name, directory)
    os.environ["DRP_TEST_PASSPHRASE"] = "correct horse"
    drp.keys_generate("locked", directory, passphrase_env="DRP_TEST_PASSPHRASE")
    return directory


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh file:// store."""
    return (tmp_path / "store").as_uri()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small directory tree to back up (text, binary, nested, empty file)."""
    root = tmp_path / "site"
    (root / "www" / "img").mkdir(parents=True)
    (root / "www" / "index.html").write_text("<h1>acme</h1>\n")
    (root / "www" / "img" / "logo.bin").write_bytes(bytes(range(256)) * 300)
    (root / "www" / "empty").write_bytes(b"")
    return root / "www"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving health.json; yields its base URL."""
    docroot = tmp_path / "web"
    docroot.mkdir()
    (docroot / "health.json").write_text('{"status": "UP", "items": [{"name": "web"}]}')

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(docroot), **kwargs)

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def same_tree(a: Path, b: Path) -> None:
    """Asserts that two directory trees hold the same files with the same bytes."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    assert files_a == files_b
    for rel in files_a:
        if (a / rel).is_file():
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture
def drp_bin() -> str:
    """The drp command."""
    path = required_env("DRP_BIN")
    assert shutil.which(path), f"DRP_BIN={path} is not executable"
    return path
