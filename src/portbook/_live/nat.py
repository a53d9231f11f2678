"""Destination NAT rules: ports that are forwarded somewhere else before any socket sees them.

Docker (always, beside ``docker-proxy``), Podman's netavark, Kubernetes'
kube-proxy and nerdctl publish ports with DNAT rules; where the rule does
all the work, no host socket holds the port at all. The rules are read as
text, never changed:

- ``nft list ruleset``: every table, native nftables ones too. Its JSON
  form (``nft -j``) cannot be used for rules made through ``iptables-nft``
  (what Debian's ``iptables`` is): their target is an opaque
  ``{"xt": {"type": "target", "name": "DNAT"}}`` without the address, as are
  their comments. The text form prints ``dnat to ADDRESS:PORT``.
- ``iptables-save -t nat`` (and ``ip6tables-save``): the same rules in
  iptables' words, with their comments (netavark writes the container id in
  one: ``dnat name: podman id: ID``). It shows only tables iptables made.

Both need root (``CAP_NET_ADMIN``); without it there are no rules to read and
:func:`read_dnat_rules` says so. A rule's comment, where the DNAT rule has
none, is taken from the one rule that jumps to its chain (netavark puts the
comment on the jump into a per-container chain).
"""

from __future__ import annotations

import re
import shutil
import subprocess

from portbook._record import public, record, replace

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DnatRule",
    "DnatRules",
    "parse_iptables_save",
    "parse_nft_ruleset",
    "read_dnat_rules",
    "rules_for_port",
]


@record
class DnatRule:
    """One DNAT rule: packets to ``host_address``:``host_port``..``host_port_end`` go to the target.

    ``host_address`` is ``None`` when the rule matches every local address;
    it may be a network (``10.0.0.0/8``). ``target_port`` is ``None`` when the
    rule keeps the port. ``source`` is ``"nft"`` or ``"iptables"``.
    """

    protocol: str
    host_address: str | None
    host_port: int
    host_port_end: int
    target_address: str
    target_port: int | None
    comment: str | None
    table: str
    chain: str
    source: str

    @property
    def key(self) -> tuple[str, str | None, int, int, str, int | None]:
        """What a rule does, whichever tool printed it."""
        return (
            self.protocol,
            self.host_address,
            self.host_port,
            self.host_port_end,
            self.target_address,
            self.target_port,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "host_address": self.host_address,
            "host_port": self.host_port,
            "host_port_end": self.host_port_end,
            "target_address": self.target_address,
            "target_port": self.target_port,
            "comment": self.comment,
            "table": self.table,
            "chain": self.chain,
            "source": self.source,
        }

    def target_port_for(self, port: int) -> int:
        """Where a packet to host port ``port`` goes (ranges map one to one)."""
        if self.target_port is None:
            return port
        return self.target_port + (port - self.host_port)


@record
class DnatRules:
    """The rules read, and a note for each tool that could not be read (``"nft: ..."``)."""

    rules: tuple[DnatRule, ...]
    notes: tuple[str, ...]


# -- nft ---------------------------------------------------------------------------------------

_NFT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}]|[^\s{}]+')
_TABLE = re.compile(r"^\s*table\s+(\S+)\s+(\S+)\s*\{")
_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")


def parse_nft_ruleset(text: str) -> list[DnatRule]:
    """The DNAT rules in ``nft list ruleset`` output."""
    rules: list[DnatRule] = []
    jumps: list[tuple[str, str | None]] = []
    table, chain = "", ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found_table = _TABLE.match(line)
        if found_table is not None:
            table, chain = f"{found_table.group(1)} {found_table.group(2)}", ""
            continue
        found_chain = _CHAIN.match(line)
        if found_chain is not None:
            chain = found_chain.group(1)
            continue
        if not chain or stripped == "}" or stripped.startswith(("type ", "policy ")):
            continue
        tokens = _NFT_TOKEN.findall(stripped)
        comment = _nft_comment(tokens)
        for verb in ("jump", "goto"):
            if verb in tokens[:-1]:
                jumps.append((tokens[tokens.index(verb) + 1], comment))
        rule = _nft_rule(tokens, table, chain, comment)
        if rule is not None:
            rules.extend(rule)
    return _comment_from_jumps(rules, jumps)


def _nft_comment(tokens: list[str]) -> str | None:
    if "comment" in tokens[:-1]:
        text = tokens[tokens.index("comment") + 1]
        return text[1:-1] if text.startswith('"') else text
    return None


def _nft_rule(
    tokens: list[str], table: str, chain: str, comment: str | None
) -> list[DnatRule] | None:
    if "dnat" not in tokens:
        return None
    at = tokens.index("dnat")
    rest = tokens[at + 1 :]
    while rest and rest[0] in ("ip", "ip6", "to"):
        rest = rest[1:]
    if not rest:
        return None
    target = _split_target(rest[0])
    if target is None:
        return None
    head = tokens[:at]
    protocol, ports = _nft_ports(head)
    if protocol is None:
        return None
    address = _nft_value(head, ("ip", "daddr")) or _nft_value(head, ("ip6", "daddr"))
    return [
        DnatRule(protocol, address, first, last, target[0], target[1], comment, table, chain, "nft")
        for first, last in ports
    ]


def _nft_value(tokens: list[str], words: tuple[str, str]) -> str | None:
    for i in range(len(tokens) - 2):
        if (tokens[i], tokens[i + 1]) == words:
            value = tokens[i + 2]
            return None if value in ("!=", "{") else _without_host_mask(value)
    return None


def _nft_ports(tokens: list[str]) -> tuple[str | None, list[tuple[int, int]]]:
    """The protocol and destination ports a rule matches (``tcp dport 80``, ``th dport {1, 2}``)."""
    protocol: str | None = None
    for i, token in enumerate(tokens[:-1]):
        if token in ("tcp", "udp", "sctp") and tokens[i + 1] == "dport":
            protocol = token
        elif token == "l4proto" and tokens[i + 1] in ("tcp", "udp", "sctp"):
            protocol = tokens[i + 1]
    for i, token in enumerate(tokens[:-2]):
        if token in ("tcp", "udp", "sctp", "th") and tokens[i + 1] == "dport":
            values = tokens[i + 2 :]
            if values[0] == "!=":
                return None, []
            if values[0] == "{":
                end = values.index("}") if "}" in values else len(values)
                items = [v.rstrip(",") for v in values[1:end]]
            else:
                items = [values[0]]
            return protocol, [r for r in (_port_range(v) for v in items if v) if r is not None]
    return None, []


# -- iptables-save ---------------------------------------------------------------------------


def parse_iptables_save(text: str) -> list[DnatRule]:
    """The DNAT rules in ``iptables-save``/``ip6tables-save`` output (every table shown)."""
    import shlex

    rules: list[DnatRule] = []
    jumps: list[tuple[str, str | None]] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not line.startswith("-A "):
            continue
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        options = _iptables_options(args[2:])
        chain = args[1]
        comment = options.get("--comment")
        jump = options.get("-j") or options.get("-g")
        if jump is not None and jump != "DNAT":
            jumps.append((jump, comment))
        rule = _iptables_rule(options, table, chain)
        if rule is not None:
            rules.append(rule)
    return _comment_from_jumps(rules, jumps)


def _iptables_options(args: list[str]) -> dict[str, str]:
    """Option -> value; a negated option (``! -d X``) is kept as ``!-d``."""
    options: dict[str, str] = {}
    negate = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "!":
            negate = True
            i += 1
            continue
        if arg.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("-"):
            options[("!" if negate else "") + arg] = args[i + 1]
            i += 2
        else:
            i += 1
        negate = False
    return options


def _iptables_rule(options: dict[str, str], table: str, chain: str) -> DnatRule | None:
    if options.get("-j") != "DNAT" or "--to-destination" not in options:
        return None
    protocol = options.get("-p")
    port_text = options.get("--dport") or options.get("--dports")
    if protocol is None or port_text is None:
        return None
    ports = _port_range(port_text.replace(":", "-"))
    target = _split_target(options["--to-destination"])
    if ports is None or target is None:
        return None
    address = options.get("-d")
    return DnatRule(
        protocol,
        _without_host_mask(address) if address is not None else None,
        ports[0],
        ports[1],
        target[0],
        target[1],
        options.get("--comment"),
        table,
        chain,
        "iptables",
    )


# -- shared ------------------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int] | None:
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        return None
    return int(first), int(last) if dash else int(first)


def _split_target(text: str) -> tuple[str, int | None] | None:
    """``172.17.0.2:80``, ``[fd00::2]:80``, ``10.0.0.1`` (port kept), ``10.0.0.1:80-90`` (first)."""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        address, _, port_text = text.partition(":")
    else:
        address, port_text = text, ""
    if not address:
        return None
    ports = _port_range(port_text) if port_text else None
    if port_text and ports is None:
        return None
    return address, ports[0] if ports is not None else None


def _without_host_mask(address: str) -> str:
    for mask in ("/32", "/128"):
        if address.endswith(mask):
            return address[: -len(mask)]
    return address


def _comment_from_jumps(
    rules: list[DnatRule], jumps: list[tuple[str, str | None]]
) -> list[DnatRule]:
    comments: dict[str, set[str]] = {}
    for target_chain, comment in jumps:
        if comment:
            comments.setdefault(target_chain, set()).add(comment)
    result = []
    for rule in rules:
        inherited = comments.get(rule.chain, set())
        if rule.comment is None and len(inherited) == 1:
            result.append(replace(rule, comment=next(iter(inherited))))
        else:
            result.append(rule)
    return result


# -- reading -----------------------------------------------------------------------------------


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=10, check=False, errors="replace"
    )
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise OSError(message)
    return done.stdout


def read_dnat_rules(run: Callable[[Sequence[str]], str] | None = None) -> DnatRules:
    """Every DNAT rule of this machine, from ``nft`` and ``iptables-save`` where installed.

    Rules both tools show (iptables-nft ones) are kept once, iptables' copy
    (it carries the comments). ``run`` runs a command and returns its output
    (tests); by default the tools found on ``PATH`` (and ``/usr/sbin``).
    """
    runner = run if run is not None else _run
    notes: list[str] = []
    by_key: dict[tuple[object, ...], DnatRule] = {}
    commands = (
        ("iptables-save", ("-t", "nat"), parse_iptables_save),
        ("ip6tables-save", ("-t", "nat"), parse_iptables_save),
        ("nft", ("list", "ruleset"), parse_nft_ruleset),
    )
    for tool, args, parse in commands:
        path = _tool(tool) if run is None else tool
        if path is None:
            continue
        try:
            text = runner([path, *args])
        except (OSError, subprocess.SubprocessError) as exc:
            notes.append(f"{tool}: {exc}")
            continue
        for rule in parse(text):
            by_key.setdefault(rule.key, rule)
    return DnatRules(tuple(by_key.values()), tuple(notes))


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def rules_for_port(
    rules: Sequence[DnatRule], protocol: str, port: int, address: str | None = None
) -> list[DnatRule]:
    """The rules that forward ``protocol`` host ``port`` (to ``address``, when given)."""
    return [
        r
        for r in rules
        if r.protocol == protocol
        and r.host_port <= port <= r.host_port_end
        and (address is None or r.host_address in (None, address))
    ]


public(DnatRule)
