"""Fixtures of the drp Python tests: real keys, a real file:// store, a real HTTP server.

Run by drp-py/tests/python.rs (part of `cargo test --workspace`), which builds the wheel,
installs it into a fresh virtual environment and sets:

- DRP_BIN: the `drp` command, to compare the package's messages with the CLI's;
- DRP_ANSIBLE_PLAYBOOK, DRP_ANSIBLE_DOC: ansible-core's commands;
- DRP_COLLECTIONS: the directory holding `ansible_collections/drp/ops`.

Recoveries and drills run on the workspace of the real `drp demo` (the `demo` fixture);
remote hosts are a real OpenSSH sshd on 127.0.0.1 (the `sshd` fixture).
"""

from __future__ import annotations

import http.server
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
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


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on at `address` (right now)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class Sshd:
    """A real OpenSSH sshd on 127.0.0.1, as drp-provision/tests/support/sshd.rs starts it: its
    own directory with an ed25519 host key, a client key (`id`, no passphrase) in
    `authorized_keys`, and `known_hosts` listing the host key as `[127.0.0.1]:PORT`;
    `StrictModes no` (the directory is under a world-writable /tmp). It logs in the user
    running the tests; its log is `DIR/sshd.log`."""

    address = "127.0.0.1"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.child: subprocess.Popen | None = None
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation directory
        for name in ("hostkey", "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-C", "drp-test", "-N", "",
                            "-f", str(directory / name)], check=True)
        shutil.copy(directory / "id.pub", directory / "authorized_keys")

    @property
    def client_key(self) -> Path:
        return self.dir / "id"

    @property
    def known_hosts(self) -> Path:
        """Lists this server's host key (and nothing else)."""
        return self.dir / "known_hosts"

    @property
    def target(self) -> str:
        """`USER@127.0.0.1:PORT`."""
        return f"{self.user}@{self.address}:{self.port}"

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")

    def start(self) -> None:
        """Starts sshd on a free port and waits until it accepts connections (another port
        if the one picked was taken meanwhile)."""
        for _ in range(5):
            self.port = free_port()
            config = self.dir / "sshd_config"
            d = self.dir
            config.write_text(
                f"Port {self.port}\nListenAddress {self.address}\nHostKey {d}/hostkey\n"
                f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
                "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "UsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
                "MaxStartups 100\nMaxSessions 50\nLogLevel VERBOSE\n")
            with open(d / "sshd.log", "ab") as log:
                self.child = subprocess.Popen(
                    ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
            deadline = time.monotonic() + 10
            while self.child.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection((self.address, self.port), timeout=0.5).close()
                except OSError:
                    time.sleep(0.02)
                    continue
                host_key = (d / "hostkey.pub").read_text().strip()
                self.known_hosts.write_text(f"[{self.address}]:{self.port} {host_key}\n")
                return
            self.stop()
        pytest.fail(f"sshd did not start; its log:\n{self.log()}")

    def stop(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child.wait()
            self.child = None


@pytest.fixture
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A running sshd on 127.0.0.1 (see `Sshd`), stopped after the test, passed or failed."""
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


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


class Demo:
    """A workspace made by the real `drp demo` (keys, a plan with local-transport hosts on
    127.0.0.2-4, a file:// store holding backups and the demo's own drill). `ready()` makes it
    fit for another drill or recovery, as an operator would after the demo: the spares freed
    (their leases removed, their services stopped, their files gone) and the primary's
    services started again. Every service is stopped at the end of the test."""

    def __init__(self, root: Path, drp_bin: str) -> None:
        self.dir = root
        self.plan = root / "drp.toml"
        self.drp_bin = drp_bin
        self.children: list[subprocess.Popen] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """The drp command, in the workspace."""
        return subprocess.run([self.drp_bin, *args], cwd=self.dir, capture_output=True,
                              text=True, timeout=300)

    def cli_error(self, *args: str) -> str:
        """The message of a drp command that fails (after `drp: error: `)."""
        run = self.cli(*args)
        assert run.returncode != 0, run.stdout
        line = run.stderr.strip()
        assert line.startswith("drp: error: "), run.stderr
        return line[len("drp: error: "):]

    def port(self, stack: str) -> int:
        """The port of `stack`'s service, from its probe in the plan."""
        text = self.plan.read_text()
        section = text.split(f"[stacks.{stack}.probes.http]", 1)[1]
        return int(re.search(r'url = "http://\{host\}:(\d+)/', section).group(1))

    def add_scenario(self, toml: str) -> None:
        self.plan.write_text(self.plan.read_text() + toml)

    def pids(self) -> list[int]:
        pids = []
        for pid_file in self.dir.glob("hosts/*/run/*.pid"):
            text = pid_file.read_text().strip()
            if text.isdigit():
                pids.append(int(text))
        return pids

    def free_spares(self) -> None:
        """The spares free again: no lease, no service, no files."""
        for lease in (self.dir / "store" / ".drp" / "leases").glob("*.json"):
            lease.unlink()
        for spare in ("spare-1", "spare-2"):
            for pid_file in (self.dir / "hosts" / spare / "run").glob("*.pid"):
                kill(int(pid_file.read_text().strip()))
                pid_file.unlink()
            shutil.rmtree(self.dir / "hosts" / spare / "srv", ignore_errors=True)

    def start_primary(self) -> None:
        """The primary's services, as the demo started them, answering."""
        host = self.dir / "hosts" / "primary-1"
        for stack in ("acme", "globex"):
            child = subprocess.Popen(
                [self.drp_bin, "demo", "serve", "--root", f"srv/{stack}/www",
                 "--address-file", "address", "--port", str(self.port(stack))],
                cwd=host, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            (host / "run" / f"{stack}.pid").write_text(f"{child.pid}\n")
            self.children.append(child)
        for stack in ("acme", "globex"):
            wait_until(lambda: answers("127.0.0.2", self.port(stack)), f"{stack} to start")

    def ready(self) -> "Demo":
        self.free_spares()
        self.start_primary()
        return self

    def stop(self) -> None:
        for child in self.children:
            child.kill()
            child.wait()
        for pid in self.pids():
            kill(pid)


def kill(pid: int) -> None:
    """Kills a process, frozen (SIGSTOP) or not."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


def answers(address: str, port: int) -> bool:
    """Whether an HTTP GET of / answers 200 within a second."""
    try:
        with socket.create_connection((address, port), timeout=1) as conn:
            conn.settimeout(1)
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_until(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def demo(tmp_path: Path, drp_bin: str) -> Iterator[Demo]:
    """A fresh `drp demo` workspace, as the demo leaves it: its services stopped, its spares
    leased to its drill's recovery (call `ready()` for another drill or recovery)."""
    root = tmp_path / "ws"
    made = subprocess.run([drp_bin, "demo", "--dir", str(root)], capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    workspace = Demo(root, drp_bin)
    try:
        yield workspace
    finally:
        workspace.stop()


class Ticker(threading.Thread):
    """Counts while a call runs: with the GIL held by the call, it could not."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ticks = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.ticks += 1
            time.sleep(0.005)

    def __enter__(self) -> "Ticker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
        self.running = False
        self.join()
