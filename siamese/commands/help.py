"""`siamese COMMAND --help`: the command's usage, what it does (its config's opening comment) and
every key of its config with the comment beside it — the config is the one source of both."""

from __future__ import annotations

import re

from siamese.io.paths import CONF_DIR

__all__ = ["command_help", "config_keys"]

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
LFW_RULE = ("LFW is found at, in this order: data.root=..., the LFW_ROOT environment variable, data/lfw, "
            "or ../shared/datasets/lfw beside the repository")


def config_keys(config: str) -> tuple[str, list[tuple[str, str, str]], list[str]]:
    """(the opening comment, [(dotted key, value, comment)], config groups in its defaults list)
    of conf/<config>.yaml."""
    lines = (CONF_DIR / f"{config}.yaml").read_text(encoding="utf-8").splitlines()
    about = []  # prose lines are joined; an example line (starting with `) keeps its own line
    for line in lines:
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if about and text and not text.startswith("`") and not about[-1].startswith("`"):
            about[-1] += " " + text
        elif text:
            about.append(text)
    keys, groups, parents, in_defaults = [], [], [], False
    for line in lines:
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults:
            m = re.match(r"^\s+-\s+(?:override\s+/)?([\w/]+):\s*(\w+)", line)
            if m:
                if m.group(1) not in ("hydra", "paths"):
                    groups.append(f"{m.group(1)}={m.group(2)}")
                continue
            if line.strip().startswith("-") or not line.strip():
                continue
            in_defaults = False
        m = _KEY.match(line)
        if not m or m.group("key") in ("hydra", "task_name"):
            continue
        depth = len(m.group("indent")) // 2
        parents = parents[:depth]
        value = m.group("value").strip()
        if not value:  # a block: its keys follow
            parents.append(m.group("key"))
            continue
        if parents[:1] == ["hydra"]:
            continue
        keys.append((".".join([*parents, m.group("key")]), value, (m.group("comment") or "").strip()))
    return "\n".join(about), keys, groups


def command_help(name: str, config: str, summary: str, positional: list[str], fixed: list[str]) -> str:
    """The help page of one command."""
    about, keys, groups = config_keys(config)
    usage = " ".join([f"siamese {name}", *(p.upper() for p in positional), "[key=value ...]"])
    out = [f"usage: {usage}", "", summary + ".", ""]
    if about:
        out += [about, ""]
    fixed = [f for f in fixed if not f.endswith("=null")]  # keys the command does not use
    if fixed:
        # action=add reads as `gallery add`; any other fixed key is shown as the override it is
        shown = " ".join(f.split("=", 1)[1] if f.startswith("action=") else f for f in fixed)
        out += [f"(the same as `siamese {config} {shown} ...`)", ""]
    if positional:
        out.append("arguments (or as key=value): " + ", ".join(f"{p.upper()} = {p}" for p in positional))
        out.append("")
    out.append("keys (key=value on the command line; --key value works too):")
    width = max((len(k) for k, _, _ in keys), default=10)
    for key, value, comment in keys:
        shown = "(required)" if value == "???" else value
        out.append(f"  {key:<{width}}  {shown}" + (f"   {comment}" if comment else ""))
    if groups:
        out += ["", "config groups (choose with group=option): " + ", ".join(groups)]
    if any(g.startswith("data=") for g in groups):
        out += ["", LFW_RULE + "."]
    out += ["", "`--cfg job` prints the whole composed config; verbose=true shows library logs; exit codes: 0 done, "
            "1 the input could not be used, 2 the command line is wrong."]
    return "\n".join(out)
