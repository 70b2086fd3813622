"""How results read for people: what the CLI prints for each command (--json prints
the data itself). Tables are rich tables; every cell and line that holds a string from
the user or the server (a build command, a step name, a detail) is plain text, never
read as rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from onebox.agent.backup import human
from onebox.agent.site_check import MAINTENANCE

View = str | RenderableType
Data = dict[str, Any]


def table(*headers: str, rows: list[list[str]], empty: str) -> View:
    """A borderless table: a header row, then one row per entry (or a line saying why
    there is none)."""
    if not rows:
        return empty
    grid = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    return grid


def lines(*parts: str) -> str:
    return "\n".join(parts)


# ---------------------------------------------------------------------------- app


def adopt_text(found: Any, written: bool) -> str:
    site = found.site
    django = site.get("django") or {}
    db = (django.get("databases") or {}).get("default") or {}
    headline = f"wrote {found.config}" if written else f"would write {found.config} (dry run)"
    out = [
        headline,
        f"  site          {', '.join(site['names']) or '(no ServerName)'} "
        f"({site['vhost']['file']}:{site['vhost']['line']})",
        f"  served by     Apache {found.apache.get('version', '?')} + mod_wsgi "
        f"({site['mode']} mode, Python {found.apache.get('mod_wsgi_python') or '?'}), "
        f"as {site['user']}",
        f"  code          {site['code']}  (virtualenv {site['venv'] or '-'})",
        f"  settings      {site['settings'] or '?'}  (Django {django.get('django', '?')})",
        f"  database      {db.get('engine', '?').rsplit('.', 1)[-1]} {db.get('name', '')} "
        f"as {db.get('user', '?')}@{db.get('host') or 'localhost'}",
    ]
    if found.other_sites:
        out.append(f"  other sites   {'; '.join(found.other_sites)} (Apache keeps serving them)")
    marks = {"fix": "FIX", "change": "OFFER", "note": "note"}
    for finding in found.findings:
        out.append(f"  {marks[finding.level]:<5} {finding.text}")
        if finding.fix:
            out.append(f"        -> {finding.fix}")
    out += [
        "next, each with --dry-run to see it first:",
        "  onebox setup    installs onebox's parts beside Apache (no Caddy), copies the "
        "database password into the secrets, copies the uploads, takes a first backup",
        "  onebox deploy   builds a release, then comments out mod_wsgi in the vhost and "
        "serves the release through Apache (configtest first; put back if anything fails)",
    ]
    return "\n".join(out)


def switch_text(result: dict[str, Any], to: str) -> str:
    if to == "confirm":
        return f"{result['host']}: the move to Caddy is confirmed (Apache is masked)"
    if to == "caddy":
        return (
            f"{result['host']}: Caddy serves the site on 80 and 443; Apache is stopped "
            f'(disabled, its config kept). [server] proxy = "caddy" in {result["config"]}.\n'
            "back: `onebox adopt --switch-to apache`; keep it: `onebox adopt --confirm`"
        )
    return (
        f"{result['host']}: Apache serves the site again, through onebox's releases. "
        f'[server] proxy = "apache" in {result["config"]}'
    )


def adopt_undo_text(result: dict[str, Any]) -> str:
    if not result["restored"]:
        return f"{result['vhost']} is as it was before onebox already: nothing changed"
    return (
        f"{result['vhost']} is back as it was before onebox: Apache + mod_wsgi serve the "
        "old code again (onebox's releases are kept; `onebox deploy` moves the site back)"
    )


def init_text(target: str, found: Any, filled: list[str] | None, host: str) -> str:
    if filled is None:
        headline = f"wrote {target}"
    elif filled:
        headline = f"kept {target}, filled in {', '.join(filled)}"
    else:
        headline = f"kept {target} (it has everything init detects; --force writes it anew)"
    out = [
        headline,
        f"  settings      {found.settings}",
        f"  wsgi          {found.wsgi}",
        f"  dependencies  {found.requirements or '(none found)'}",
        f"  static root   {found.static_root or '(not set: collectstatic needs STATIC_ROOT)'}",
        f"  media root    {found.media_root or '(not set)'}",
    ]
    if found.required_env:
        out.append(
            f"  secrets       {', '.join(found.required_env)} (set them with "
            "`onebox env set KEY=VALUE`)"
        )
    if found.optional_env:
        out.append(
            f"  optional      {', '.join(found.optional_env)} (read with a default: set "
            "only those you want)"
        )
    out += [f"  proposed      {reason}" for reason in found.background_reasons]
    out += [f"  note: {note}" for note in found.notes]
    out.append(
        "next: `onebox setup` and `onebox deploy`"
        if host
        else "next: set [server] host, then `onebox setup` and `onebox deploy`"
    )
    return lines(*out)


def setup_text(result: Data) -> str:
    """One line per host (several, with [servers]: each named with its role)."""
    if "hosts" in result:
        return lines(*(f"{one_setup(host)} [{host['role']}]" for host in result["hosts"]))
    return one_setup(result)


def one_setup(result: Data) -> str:
    if result["changed"]:
        return f"{result['host']}: set up ({', '.join(result['changed'])} changed)"
    return f"{result['host']}: already set up, nothing changed"


def plan_text(result: Data, what: str) -> str:
    """A dry run: each step that would run, and what it would change."""
    out = [f"dry run: nothing was done on {result['host']}. {what} would:"]
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
        out.append(f" {mark} {step['name']}{after}")
        out += [f"     {line}" for change in changes for line in change_lines(change)]
    return lines(*out)


# steps that report nothing themselves
QUIET = {
    "prune",
    "processes",
    "maintenance page off",
    "free the idle slot",
    "idle slot freed",
}


def change_lines(change: dict[str, str]) -> list[str]:
    kind, target, diff = change["kind"], change["target"], change["diff"]
    if kind == "command":
        return [f"$ {target}"]
    if kind == "file" and diff.startswith("---"):
        return [f"file {target}:", *(f"  {line}" for line in diff.rstrip("\n").splitlines())]
    return [f"{kind} {target}" + (f"  ({diff})" if diff else "")]


def deploy_text(result: Data) -> str:
    if "hosts" in result:  # a rolling deploy: each web host's own release name
        names = ", ".join(f"{h['host']} {h['release']}" for h in result["hosts"])
        batch = result.get("batch", 1)
        pace = "one at a time" if batch == 1 else f"{batch} at a time"
        out = [f"deployed to {len(result['hosts'])} web host(s), {pace}: {names}"]
        if result.get("hooks_failed"):
            out.append(f"after_switch failed (reported above): {', '.join(result['hooks_failed'])}")
        if result.get("skipped"):
            out.append(f"skipped: {', '.join(result['skipped'])} (they keep their release)")
    else:
        out = [f"deployed release {result['release']} in {result['seconds']}s"]
    migrated = result.get("migrations") or {}
    if migrated.get("applied"):
        backup = migrated.get("backup")
        out.append(
            f"applied {len(migrated['applied'])} migration(s)"
            + (f"; backup {backup} holds the database as it was before" if backup else "")
        )
    return lines(*out, *site_lines(result))


def site_lines(result: Data) -> list[str]:
    """Says "live at" only when a visitor gets the release; else what stands in the
    way. The maintenance page is the user's own choice: said, but no failure."""
    problems = result.get("problems") or []
    out = [] if problems or result.get("maintenance") else [f"live at {result['url']}"]
    if result.get("maintenance"):
        out.append(f"but: {MAINTENANCE}")
    return out + [f"but: {problem}" for problem in problems]


def status_text(result: Data) -> str:
    """One server's state; several web hosts: each one's, then the problems of all."""
    if "hosts" not in result:
        return one_status(result)
    parts = [
        f"server   {h['host']}\nPROBLEM  does not answer: {h['unreachable']}"
        if "unreachable" in h
        else one_status({**h, "problems": []})
        for h in result["hosts"]
    ]
    problems = [f"PROBLEM  {problem}" for problem in result["problems"]]
    return "\n\n".join(parts) + ("\n\n" + lines(*problems) if problems else "")


def one_status(result: Data) -> str:
    release = result.get("release") or {}
    missing = "(its files are missing)" if result.get("live_slot") else "(none deployed)"
    server = result["server"]
    return lines(
        f"server   {result['host']} ({server['os_name']}, Python {server['python']})",
        f"url      {result['url']}",
        f"release  {release.get('release_id', missing)} {release.get('commit', '')}",
        f"slot     {result.get('live_slot') or '-'}  units: "
        + ", ".join(f"{k}={v}" for k, v in result["units"].items()),
        f"{result.get('proxy', 'Caddy').lower():<8} {result['caddy']}",
        f"health   {result.get('health', '-')}",
        *serving_lines(result.get("serving") or {}),
        *standby_lines(result.get("standby") or {}),
        *background_lines(result.get("background") or {}),
        *backup_lines(result.get("backups") or {}),
        *update_lines(result.get("updates") or {}),
        *[f"PROBLEM  {problem}" for problem in result.get("problems", [])],
    )


def serving_lines(serving: Data) -> list[str]:
    """gunicorn's workers of the live release, and the server they were sized for."""
    if not serving.get("workers"):
        return []
    threads = f" x {serving['threads']} threads" if serving["threads"] > 1 else ""
    server = f"{serving['cores']} cores, {serving['memory_mib'] / 1024:.1f} GiB"
    return [f"workers  {serving['workers']}{threads} ({serving['worker_class']}; server: {server})"]


def standby_lines(standby: Data) -> list[str]:
    """The previous release kept running for an instant rollback, or why there is none."""
    if standby.get("release"):
        return [
            f"standby  release {standby['release']} ({standby['slot']} slot, "
            f"{standby['memory_mib']} MiB): `onebox rollback` only switches to it"
        ]
    return [f"standby  none: {standby['why']}"] if standby.get("why") else []


def background_lines(state: Data) -> list[str]:
    out = []
    for process in state.get("processes", []):
        restarts = f", {process['restarts']} restart(s)" if process["restarts"] else ""
        out.append(
            f"process  {process['name']}: {process['state']} since {process['since'] or '-'}"
            f" (release {process['release']}{restarts})"
        )
    for schedule in state.get("schedules", []):
        outcome = schedule["result"]
        outcome = (
            "FAILED" + outcome.removeprefix("failed") if outcome.startswith("failed") else outcome
        )
        last = f"{schedule['last_run']} {outcome}" if schedule["last_run"] else "never"
        out.append(
            f"schedule {schedule['name']} ({schedule['calendar']}): last run {last}, "
            f"next {schedule['next'] or '-'}"
        )
    return out


def update_lines(state: Data) -> list[str]:
    if not state:
        return []
    parts = ["security updates on" if state.get("unattended_upgrades") else "security updates OFF"]
    if state.get("reboot_required"):
        parts.append("a REBOOT is pending (a new kernel)")
    if state.get("outdated_services"):
        parts.append("restart needed: " + ", ".join(state["outdated_services"]))
    return [f"updates  {'; '.join(parts)}"]


def backup_lines(state: Data) -> list[str]:
    out = []
    for job, label in (("backup", "backup"), ("verify", "verified")):
        last = state.get(job)
        if not last:
            text = "never"
        elif last.get("ok"):
            text = f"{last.get('id', '')} at {last['time']}, ok"
        else:
            good = state.get(f"last_good_{job}", {}).get("time", "never")
            text = f"FAILED at {last['time']}: {last.get('error')} (last good: {good})"
        if state.get(f"{job}_unit_failed"):
            text += f"  [the scheduled {job} failed: `onebox logs` shows why]"
        timer = state.get(f"{job}_timer") or {}
        if timer.get("next"):
            text += f"  next: {timer['next']}"
        out.append(f"{label:<8} {text}")
    return out


def env_set_text(result: Data, backup: bool) -> str:
    changed = ", ".join(result["changed"]) or "nothing"
    if backup:
        return f"set {changed} for the backups"
    where = f" on {len(result['hosts'])} web hosts" if "hosts" in result else ""
    return f"set {changed}{where}; deploy (or restart) for the app to see it"


def env_list_text(result: Data) -> str:
    return lines(*(f"{k}={v}" for k, v in sorted(result["values"].items())))


# ------------------------------------------------------------------------ release


def releases_table(result: Data) -> View:
    rows = [
        [
            ("* " if entry["live"] else "  ") + entry["release_id"],  # * the live one
            entry.get("created", ""),
            (entry.get("commit") or "-")[:12],
            entry.get("deployer", ""),
        ]
        for entry in reversed(result["releases"])
    ]
    return table(
        "  RELEASE", "CREATED", "COMMIT", "DEPLOYED BY",
        rows=rows, empty="no releases yet: `onebox deploy` makes one",
    )  # fmt: skip


def rollback_text(result: Data) -> str:
    seconds = f" in {result['seconds']}s" if "seconds" in result else ""
    how = " (the standby: a switch)" if result.get("standby") else ""
    out = [f"rolled back to release {result['release']} (was {result['previous']}){how}{seconds}"]
    if "hosts" in result:  # rolling: one line per web host
        out = [f"{h['host']}: rolled back to release {h['release']}" for h in result["hosts"]]
    restored = result.get("restored")
    if restored:
        out.append(
            f"database and media restored from backup {restored['restored']}; what was "
            f"written since is in safety backup {restored['safety_backup']}"
        )
    return lines(*out, *site_lines(result))


def cancel_text(result: Data) -> str:
    out = [f"{run}: {outcome}" for run, outcome in result["runs"].items()]
    if "cancelled" in result["runs"].values():
        out.append("the release it was building is removed; the live release keeps serving")
    return lines(*out)


# ------------------------------------------------------------------------- backup


def backup_text(result: Data) -> str:
    db = result["manifest"]["db"]
    text = (
        f"backup {result['id']} done in {result['seconds']}s: "
        f"{len(db['tables'])} tables ({human(db['bytes'])} dump), "
        f"{result['manifest']['media']['files']} media files"
    )
    return text + (f"\ncopied off-site to {result['offsite']}" if result.get("offsite") else "")


def verify_text(result: Data) -> str:
    return (
        f"backup {result['id']} verified: {result['tables']} tables restored identical; "
        f"repositories checked: {', '.join(result['checked'])}"
    )


def backup_key_text(result: Data) -> str:
    out = [
        f"backup key: {result['key']}",
        "",
        "Keep a copy in your password manager, away from this server: backups cannot be",
        "read without it, and a lost server takes its copy with it. To read a repository",
        "by hand: RESTIC_REPOSITORY=<repo> restic snapshots (restic asks for this key).",
        f"repositories: {', '.join(result['repositories'])}",
    ]
    if result["ssh_public_key"]:
        out += [
            "",
            "The off-site SFTP host must accept this key (add it to authorized_keys):",
            result["ssh_public_key"],
        ]
    return lines(*out)


def backups_table(result: Data) -> View:
    rows = [
        [
            entry["id"],
            entry["time"][:19],
            entry.get("reason", ""),
            human(entry.get("db_bytes", 0)),
            f"{entry.get('media_files', 0)} files {human(entry.get('media_bytes', 0))}",
            ", ".join(entry["where"]) or "incomplete",
        ]
        for entry in result["backups"]
    ]
    return table(
        "ID", "TIME", "REASON", "DATABASE", "MEDIA", "WHERE",
        rows=rows, empty="no backups yet: `onebox backup` makes one",
    )  # fmt: skip


def restore_text(result: Data) -> str:
    text = (
        f"restored backup {result['restored']} (from the {result['from']} repository)\n"
        f"the data as it was before is in backup {result['safety_backup']}"
    )
    if result.get("media_bucket"):
        text += f"\nmedia {result['media_bucket']}"
    return text


def pulled_text(result: Data) -> str:
    return f"backup {result['id']}: {result['engine']} dump saved to {result['file']}"


def exported_text(result: Data) -> str:
    size = result["bytes"] / (1 << 20)
    base = "its base reused" if result["base_reused"] else "its base built"
    folder = result["manifests"].rpartition("/")[0] or "."
    lines = [
        f"release {result['release']} exported as image {result['image']} ({size:.0f} MB, "
        f"{base}): {result['image_file']}",
        f"manifests: {result['manifests']} ({len(result['objects'])} objects); the secrets "
        f"({len(result['secret_keys'])} values): {result['secret_file']} (0600, git-ignored)",
        *[f"note: {warning}" for warning in result["warnings"]],
        "to run it: push the image where the cluster pulls from, e.g.",
        f"  skopeo copy oci-archive:{result['image_file']} docker://REGISTRY/{result['image']}",
        "then, in order (the web pods wait for the migrations):",
        f"  kubectl apply -f {result['secret_file']} -f {result['manifests']}",
        f"  kubectl wait --for=condition=complete job/{result['migrate_job']} --timeout=10m",
        f"(more: docs/kubernetes.md; the folder {folder} is yours to edit and commit)",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------- security


def audit_text(result: Data) -> str:
    marks = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skipped": "skip"}
    out = []
    for check in result["checks"]:
        out.append(f"{marks[check['status']]}  {check['name']}: {check['detail']}")
        if check["fix"] and check["status"] in ("fail", "warn"):
            out.append(f"      fix: {check['fix']}")
    failed = result["failed"]
    out.append(
        f"score {result['score']}/100 on {result['host']}: "
        + (f"{len(failed)} failed ({', '.join(failed)})" if failed else "every check passed")
    )
    return lines(*out)


def history_table(result: Data) -> View:
    rows = []
    for entry in result["entries"]:
        by = entry.get("by", "?")
        if entry.get("login") not in (None, "root"):
            by += f" ({entry['login']})"
        rows.append([entry["time"], entry["action"], entry["result"], by, entry.get("detail", "")])
    return table(
        "TIME", "ACTION", "RESULT", "BY", "DETAIL",
        rows=rows, empty="nothing recorded yet: setup, deploy, rollback, restore… are",
    )  # fmt: skip


# ------------------------------------------------------------------------ sandbox


def sandboxes_table(boxes: list[Data]) -> View:
    rows = [
        [b["name"], b["address"], f"debian {b['debian']}", "running" if b["running"] else "stopped"]
        for b in boxes
    ]
    return table("NAME", "ADDRESS", "DEBIAN", "STATE", rows=rows, empty="no practice servers")
