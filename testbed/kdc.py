"""A real MIT KDC on loopback (or on the test node's bridge, where pods reach it), for the Kerberos tests: its own realm database, config and port in a temp dir.

`krb5kdc` runs in the foreground (`-n`) on a random port of its address, TCP and UDP, and is stopped when the
fixture ends. Principals are added and keytabs exported with `kadmin.local`, which works on the database
directly, so no kadmind is needed. Every wait is bounded. Tickets are short-lived on purpose (`max_life`):
the tests watch a ticket expire and a renewer keep it fresh within seconds, not hours.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from testbed.processes import stop

REALM = "AIRFLOW.TEST"
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist", "kvno")
START_TIMEOUT = 20


def missing_tools() -> list[str]:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in TOOLS if shutil.which(tool, path=search) is None]


def _tool(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search) or name


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


class Kdc:
    def __init__(self, root: Path, realm: str = REALM, max_life: str = "30s", max_renewable_life: str = "1h",
                 address: str = "127.0.0.1"):
        self.root, self.realm, self.address = root, realm, address
        self.port = free_port(address)
        self.kdc_conf = root / "kdc.conf"
        # A minimal client krb5.conf for the fixture's own tools; the tests use the one the stack renders.
        self.krb5_conf = root / "krb5.conf"
        self.kdc_conf.write_text(
            f"""[kdcdefaults]
  kdc_listen = {address}:{self.port}
  kdc_tcp_listen = {address}:{self.port}

[realms]
  {realm} = {{
    database_name = {root}/principal
    key_stash_file = {root}/stash
    acl_file = {root}/kadm5.acl
    max_life = {max_life}
    max_renewable_life = {max_renewable_life}
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }}

[logging]
  kdc = FILE:{root}/kdc.log
"""
        )
        self.krb5_conf.write_text(
            f"""[libdefaults]
  default_realm = {realm}
  dns_lookup_kdc = false
  dns_canonicalize_hostname = false
  rdns = false

[realms]
  {realm} = {{
    kdc = {address}:{self.port}
  }}
"""
        )
        (root / "kadm5.acl").write_text("")
        self.env = {**os.environ, "KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.kdc_conf)}
        self.process: subprocess.Popen | None = None

    @property
    def kdc_address(self) -> str:
        return f"{self.address}:{self.port}"

    def _run(self, *command: str, timeout: int = 30) -> str:
        result = subprocess.run(
            [_tool(command[0]), *command[1:]], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> Kdc:
        self._run("kdb5_util", "create", "-s", "-r", self.realm, "-P", "master-password-for-tests", timeout=60)
        self.process = subprocess.Popen(
            [_tool("krb5kdc"), "-n", "-r", self.realm, "-P", str(self.root / "kdc.pid")],
            env=self.env,
            stdout=open(self.root / "krb5kdc.out", "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"krb5kdc exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"krb5kdc did not listen on {self.kdc_address} within {START_TIMEOUT}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process, grace=10)
        self.process = None

    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.root / "kdc.log", self.root / "krb5kdc.out") if p.exists()]
        return "\n".join(parts)[-4000:]

    def principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.realm}"

    def add_principal(self, name: str) -> str:
        principal = self.principal(name)
        # kadmin.local exits 0 even when the principal exists (the test modules share one KDC).
        self._run("kadmin.local", "-r", self.realm, "-q", f"addprinc -randkey {principal}")
        return principal

    def keytab(self, path: Path, *names: str) -> Path:
        """Exports the principals' keys into `path`. `-norandkey` keeps the keys, so two keytabs of one
        principal stay valid together (ktadd alone would re-key it and invalidate the first)."""
        for name in names:
            self._run("kadmin.local", "-r", self.realm, "-q", f"ktadd -norandkey -k {path} {self.principal(name)}")
        return path
