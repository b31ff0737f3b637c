"""What the test node changes on the host, and how all of it is undone.

The node lives in the host's network namespace on a bridge of its own: pods get addresses on it and a route
to the service range only (no default route), so they reach the node's own servers on the bridge address and
nothing beyond the machine; two DROP rules in the mangle table make sure nothing is forwarded between the
bridge and any other interface either (kube-proxy prepends its own ACCEPT rules in the filter table, so
mangle is where a refusal sticks). Teardown removes every trace: processes, containers, mounts, network
namespaces, interfaces, routes, iptables rules and chains, cgroups, and the forwarding sysctl.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "afnode0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
NO_FORWARD_COMMENT = "airflow-platform-node-isolation"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def missing_tools() -> list[str]:
    """What the node needs from Debian and the kernel that is not here."""
    needed = {"containerd": "containerd", "runc": "runc", "ctr": "containerd", "iptables": "iptables",
              "conntrack": "conntrack", "ip": "iproute2", "ipset": "ipset"}
    missing = [package for tool, package in needed.items()
               if run("sh", "-c", f"command -v {tool}", check=False).returncode != 0]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    if os.geteuid() != 0:
        missing.append("root")
    return sorted(set(missing))


def _isolation_rules() -> list[list[str]]:
    return [
        ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-m", "comment", "--comment", NO_FORWARD_COMMENT, "-j", "DROP"],
        ["FORWARD", "!", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", NO_FORWARD_COMMENT, "-j", "DROP"],
    ]


# Where containerd's shims and the CNI plugins leave files outside the node's own directory: shim sockets and
# cached plugin results.
SHARED_DIRS = (Path("/run/containerd/s"), Path("/var/lib/cni/results"))


@dataclass
class HostState:
    """The host as it was before the node, to put back afterwards."""

    ip_forward: str = ""
    netns: set[str] = field(default_factory=set)
    # For each shared directory: its entries before the node, or None if it did not exist.
    shared: dict[Path, set[str] | None] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> "HostState":
        shared = {d: (set(os.listdir(d)) if d.is_dir() else None) for d in SHARED_DIRS}
        return cls(ip_forward=IP_FORWARD.read_text().strip(), netns=set(network_namespaces()), shared=shared)

    def new_shared_entries(self) -> list[Path]:
        found = []
        for directory, before in self.shared.items():
            if directory.is_dir():
                found += [directory / e for e in os.listdir(directory) if before is None or e not in before]
        return found

    def remove_shared_entries(self) -> None:
        for entry in self.new_shared_entries():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        for directory, before in self.shared.items():
            # The directories themselves, and parents, that did not exist before the node and are now empty.
            if before is None:
                for path in (directory, directory.parent):
                    try:
                        path.rmdir()
                    except OSError:
                        break


def network_namespaces() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]


def set_up_network() -> None:
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        raise RuntimeError(f"interface {BRIDGE} exists already: another test node is running, or one was not torn down")
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # Host processes (the engine, the operator) reaching a ClusterIP must not follow the default route.
    run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE)
    for rule in _isolation_rules():
        run("iptables", "-t", "mangle", "-I", *rule[:1], "1", *rule[1:])
    IP_FORWARD.write_text("1\n")


def cni_config(work: Path) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "airflow-node",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "dataDir": str(work / "cni-ipam"),
                    # The service range only: no default route, so nothing outside the machine is reachable.
                    "routes": [{"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kill_containers(runc_root: Path, containerd_socket: Path) -> None:
    """Every container and shim of this node's containerd, whatever kubelet managed to stop."""
    namespace_root = runc_root / "k8s.io"
    if namespace_root.exists():
        listed = run("runc", "--root", str(namespace_root), "list", "-q", check=False).stdout.split()
        for container in listed:
            run("runc", "--root", str(namespace_root), "kill", container, "KILL", check=False)
        for container in listed:
            run("runc", "--root", str(namespace_root), "delete", "--force", container, check=False)
    for pid in _pids_with_argument(str(containerd_socket)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_processes_mentioning(text: str) -> None:
    """Any process whose command line names `text` (the node's directory): what the node started, even when
    the handles to it were lost with the test process that started it."""
    for pid in _pids_with_argument(text):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def work_dirs_in_use(prefix: str) -> set[str]:
    """The node directories named on running processes' command lines (under the temp dir, `prefix*`)."""
    found = set()
    for pid in _pids_with_argument(prefix):
        try:
            proc = Path("/proc") / str(pid)
            args = [*(proc / "cmdline").read_bytes().decode(errors="replace").split("\0"), os.readlink(proc / "cwd")]
        except OSError:
            continue
        for arg in args:
            start = arg.find("/" + prefix.split("/")[-1]) if "/" in arg else -1
            if start >= 0:
                head = arg[: start + 1]
                rest = arg[start + 1:].split("/")[0]
                found.add(head.split("=")[-1] + rest)
    return {d for d in found if Path(d).is_dir()}


def _pids_with_argument(text: str) -> list[int]:
    """Processes that name `text` in their command line, their environment (the operator's KUBECONFIG) or their
    working directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            named = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
            if text in named.decode(errors="replace") or text in os.readlink(entry / "cwd"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def unmount_under(*roots: Path) -> None:
    """Everything mounted below the node's directories (kubelet's volumes, containerd's snapshots), deepest
    first."""
    prefixes = tuple(str(root) for root in roots)
    for _ in range(3):
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                points.append(point)
        if not points:
            return
        for point in sorted(points, key=lambda p: p.count("/"), reverse=True):
            run("umount", "-l", point, check=False)


def remove_network(before: HostState) -> None:
    for name in set(network_namespaces()) - before.netns:
        if name.startswith("cni-"):
            run("ip", "netns", "delete", name, check=False)
    for line in run("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout.splitlines():
        device = line.split(":")[1].strip().split("@")[0]
        run("ip", "link", "delete", device, check=False)
    run("ip", "link", "delete", BRIDGE, check=False)
    for rule in _isolation_rules():
        while run("iptables", "-t", "mangle", "-D", *rule, check=False).returncode == 0:
            pass
    if before.ip_forward:
        IP_FORWARD.write_text(before.ip_forward + "\n")


def remove_chains(prefixes: tuple[str, ...] = ("KUBE-", "CNI-")) -> None:
    """kube-proxy's, kube-router's and the CNI plugins' chains, after `kube-proxy --cleanup` did what it knows.
    Rules are parsed as iptables-save quotes them (comments hold spaces)."""
    for table in ("filter", "nat", "mangle"):
        dump = run("iptables-save", "-t", table, check=False).stdout.splitlines()
        jumps = [line for line in dump if line.startswith("-A ") and any(f"-j {p}" in line or f"-A {p}" in line for p in prefixes)]
        for line in jumps:
            run("iptables", "-t", table, *shlex.split(line.replace("-A ", "-D ", 1)), check=False)
        chains = [line[1:].split()[0] for line in dump if line.startswith(":") and line[1:].startswith(prefixes)]
        for chain in chains:
            run("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            run("iptables", "-t", table, "-X", chain, check=False)


def iptables_chains() -> list[str]:
    """Chain names of the node's kind present on the host (for the teardown test)."""
    found = []
    for table in ("filter", "nat", "mangle"):
        for line in run("iptables-save", "-t", table, check=False).stdout.splitlines():
            if line.startswith((":KUBE-", ":CNI-")) or NO_FORWARD_COMMENT in line:
                found.append(f"{table} {line}")
    return found


# kube-router's NetworkPolicy controller keeps pod and policy addresses in ipsets named KUBE-SRC-*, KUBE-DST-*
# and kube-router-*.
IPSET_PREFIXES = ("KUBE-", "kube-router")


def ipsets() -> list[str]:
    listed = run("ipset", "list", "-n", check=False).stdout.split()
    return [name for name in listed if name.startswith(IPSET_PREFIXES)]


def remove_ipsets() -> None:
    """After the chains that reference them are gone (a set in use cannot be destroyed)."""
    for name in ipsets():
        run("ipset", "destroy", name, check=False)


def remove_cgroups() -> None:
    """kubelet's `kubepods` hierarchy in every cgroup v1 controller, leaves first (rmdir fails on a busy
    cgroup, so wait briefly for killed processes to be reaped)."""
    deadline = time.monotonic() + 10
    for controller in CGROUP_ROOT.iterdir():
        top = controller / "kubepods"
        while top.exists():
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: entry[0].count("/"), reverse=True):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                break
            if top.exists():
                time.sleep(0.2)


def leftover_cgroups() -> list[str]:
    return [str(c / "kubepods") for c in CGROUP_ROOT.iterdir() if (c / "kubepods").exists()]
