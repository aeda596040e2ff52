"""Firewall confinement of the lab's listening ports: accept on lo, docker0 and ``br-*``; drop elsewhere.

One iptables chain per lab (``REGRESS-<id>``), jumped to from INPUT for the lab's TCP ports only;
``remove`` deletes the jump and the chain. ``rules`` lists them for ``lab status``.

With ``forward=True`` (our own dockerd, which runs with ``--iptables=false`` so it never rewrites
the host's firewall), the lab also lets its containers reach each other: two ACCEPT rules in
FORWARD for traffic between the lab's bridges, tagged with the lab's comment. Bridged traffic
passes FORWARD where ``br_netfilter`` is loaded, and a FORWARD policy of DROP (which an earlier
dockerd with iptables on leaves behind) would otherwise cut job containers off from service
containers. Without Docker's own isolation chains, the job networks of labs sharing our dockerd can
reach each other too (they are throwaway networks of throwaway labs on this machine).
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from harness.errors import LabError

ALLOWED_INTERFACES = ("lo", "docker0", "br-+")


def chain_name(lab_id: str) -> str:
    """The lab's chain: ``REGRESS-<id>``; iptables names are at most 28 characters, so a longer id
    keeps its first 11 characters and adds a hash of the whole (two long ids never share a chain)."""
    name = f"REGRESS-{lab_id}"
    if len(name) <= 28:
        return name
    return f"REGRESS-{lab_id[:11]}-{hashlib.sha256(lab_id.encode()).hexdigest()[:8]}"


def _jumps_to(rule: str, chain: str) -> bool:
    words = shlex.split(rule)
    return any(w == "-j" and i + 1 < len(words) and words[i + 1] == chain for i, w in enumerate(words))


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise LabError("iptables is not installed; the lab confines its ports with it (apt-get install iptables)")
    proc = subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"iptables {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def available() -> bool:
    """True when iptables can be used here (installed and permitted)."""
    return shutil.which("iptables") is not None and _ipt("-S", "INPUT", check=False).returncode == 0


def comment(lab_id: str) -> str:
    """The comment every jump and FORWARD rule of the lab carries."""
    return f"regress lab {lab_id}"


def install(lab_id: str, ports: Sequence[int], bridges: Sequence[str] = (), *, forward: bool = False) -> list[str]:
    """Add the chain and the INPUT jump for ``ports`` (and the FORWARD rules with ``forward``).

    All in one ``iptables-restore --noflush`` transaction (one process, applied atomically).
    Returns the rules as ``iptables -S`` prints them.
    """
    chain = chain_name(lab_id)
    if _ipt("-n", "-L", chain, check=False).returncode == 0:  # a stale chain of the same id
        remove(lab_id)
    tag = f'"{comment(lab_id)}"'
    lines = ["*filter", f":{chain} - [0:0]"]
    lines += [f"-A {chain} -i {interface} -j ACCEPT" for interface in (*ALLOWED_INTERFACES, *bridges)]
    lines.append(f"-A {chain} -j DROP")
    lines += _jump_lines(lab_id, ports, "-I")
    if forward:
        lines += [f"-I FORWARD -i {bridge} -o {bridge} -m comment --comment {tag} -j ACCEPT"
                  for bridge in ("docker0", "br-+")]
    lines.append("COMMIT")
    _restore("\n".join(lines) + "\n")
    return rules(lab_id)


def _jump_lines(lab_id: str, ports: Sequence[int], action: str) -> list[str]:
    tag = f'"{comment(lab_id)}"'  # lab ids are letters, digits, '.', '_' and '-' (lab.lab_dir_for)
    chain = chain_name(lab_id)
    return [f"{action} INPUT -p tcp -m multiport --dports {','.join(str(p) for p in ports[start:start + 15])} "
            f"-m comment --comment {tag} -j {chain}" for start in range(0, len(ports), 15)]  # multiport: ≤ 15 ports


def add_ports(lab_id: str, ports: Sequence[int]) -> list[str]:
    """Send more of the lab's ports (a private runner's cache server) through its existing chain.

    Raises:
        LabError: the lab has no chain (it was booted without confinement) or iptables refused.
    """
    if _ipt("-n", "-L", chain_name(lab_id), check=False).returncode != 0:
        raise LabError(f"lab {lab_id} has no firewall chain {chain_name(lab_id)}; its ports cannot join it")
    _restore("\n".join(["*filter", *_jump_lines(lab_id, ports, "-I"), "COMMIT"]) + "\n")
    return [r for r in rules(lab_id) if any(str(p) in r for p in ports) and r.startswith("-A INPUT")]


def remove_ports(lab_id: str, ports: Sequence[int]) -> None:
    """Delete the jumps :func:`add_ports` added for ``ports`` (idempotent; the chain stays)."""
    if shutil.which("iptables") is None:
        return
    for line in _jump_lines(lab_id, ports, "-D"):
        _ipt(*shlex.split(line), check=False)


def _restore(text: str) -> None:
    binary = shutil.which("iptables-restore")
    if binary is None:
        raise LabError("iptables-restore is not installed; the lab confines its ports with it (apt-get install "
                       "iptables)")
    proc = subprocess.run([binary, "-w", "5", "--noflush"], input=text, capture_output=True, text=True, timeout=30,
                          check=False)
    if proc.returncode != 0:
        raise LabError(f"iptables-restore of the lab's rules failed: {proc.stderr.strip()}\n{text}")


def _forward_rules(lab_id: str) -> list[str]:
    tag = f'--comment "{comment(lab_id)}"'
    return [r for r in _ipt("-S", "FORWARD", check=False).stdout.splitlines() if tag in r]


def rules(lab_id: str) -> list[str]:
    """Every rule of this lab (the jumps in INPUT and the chain's own)."""
    chain = chain_name(lab_id)
    found = [r for r in _ipt("-S", "INPUT", check=False).stdout.splitlines() if _jumps_to(r, chain)]
    found += _forward_rules(lab_id)
    own = _ipt("-S", chain, check=False)
    if own.returncode == 0:
        found += own.stdout.splitlines()
    return found


def remove(lab_id: str) -> None:
    """Delete the jumps and the chain (idempotent)."""
    if shutil.which("iptables") is None:
        return
    chain = chain_name(lab_id)
    for rule in _ipt("-S", "INPUT", check=False).stdout.splitlines():
        if _jumps_to(rule, chain):
            _ipt(*(["-D", *shlex.split(rule)[1:]]), check=False)
    for rule in _forward_rules(lab_id):
        _ipt(*(["-D", *shlex.split(rule)[1:]]), check=False)
    _ipt("-F", chain, check=False)
    _ipt("-X", chain, check=False)
