"""How results read for people: the texts the CLI prints (the data is what --json gives).

User-supplied strings (build commands, step names, paths) are printed as they are: this
text goes out with markup off (output.HumanReporter.result).
"""

from __future__ import annotations

from typing import Any


def plan_text(result: dict[str, Any], what: str) -> str:
    """A dry run: each step that would run, and what it would change."""
    lines = [f"dry run: nothing was done on {result['host']}. {what} would:"]
    for step in result["plan"]:
        changes = step["changes"]
        if step["step"] in QUIET and not changes:
            continue
        if step["changed"] is None:
            mark, after = "?", " (it can tell only when it runs)"
        elif step["changed"] or any(c["kind"] != "note" for c in changes):
            mark, after = "✓", ""
        else:
            mark, after = "·", " (unchanged)"
        lines.append(f" {mark} {step['name']}{after}")
        lines += [f"     {line}" for change in changes for line in change_lines(change)]
    return "\n".join(lines)


QUIET = {"prune", "processes", "maintenance page off"}  # steps that report nothing themselves


def change_lines(change: dict[str, str]) -> list[str]:
    kind, target, diff = change["kind"], change["target"], change["diff"]
    if kind == "command":
        return [f"$ {target}"]
    if kind == "file" and diff.startswith("---"):
        return [f"file {target}:", *(f"  {line}" for line in diff.rstrip("\n").splitlines())]
    return [f"{kind} {target}" + (f"  ({diff})" if diff else "")]
