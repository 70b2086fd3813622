"""Django's deployment check (`manage.py check --deploy`) as a gate that is right.

onebox's Caddy is the TLS-terminating proxy that projects are built to sit behind: it
redirects plain HTTP, sends HSTS when the app sends none, and marks the app's cookies
Secure. The warnings about those are reported as provided, not fatal. What the proxy
cannot fix holds the deploy: errors of any app, and the rest of `security.*` (DEBUG on,
a weak SECRET_KEY, ALLOWED_HOSTS...). Other apps' warnings are shown and let through.
"""

from __future__ import annotations

from .protocol import AgentError, ExitCode, emit

ERROR = 40  # django.core.checks.ERROR

PROVIDED = {
    "security.W004": "HSTS",  # Caddy sends Strict-Transport-Security when the app sends none
    "security.W005": "HSTS",
    "security.W021": "HSTS",
    "security.W008": "the HTTPS redirect",  # Caddy redirects every plain-HTTP request
    "security.W012": "Secure cookies",  # Caddy marks every cookie the app sets Secure
    "security.W016": "Secure cookies",
}

FIXES = {
    "security.W018": "turn DEBUG off in production",
    "security.W009": "SECRET_KEY is short or Django's insecure default: read it from the "
    'environment, SECRET_KEY = os.environ["SECRET_KEY"] (onebox keeps a strong one in the '
    "server's secrets file)",
    "security.W020": "ALLOWED_HOSTS is empty: read it from the environment, "
    'ALLOWED_HOSTS = os.environ["ALLOWED_HOSTS"].split(",") (onebox sets it to the '
    "site's address)",
    "security.W001": 'add "django.middleware.security.SecurityMiddleware" to MIDDLEWARE',
    "security.W002": 'add "django.middleware.clickjacking.XFrameOptionsMiddleware" to MIDDLEWARE',
    "security.W003": 'add "django.middleware.csrf.CsrfViewMiddleware" to MIDDLEWARE',
    "security.W019": 'X_FRAME_OPTIONS = "DENY"',
    "security.W022": 'SECURE_REFERRER_POLICY = "same-origin"',
}

SKIP = 'or deploy anyway, saying why, in onebox.toml: [security] skip = { django = "the reason" }'


def sort(messages: list[dict]) -> tuple[list[dict], list[str], list[str]]:
    """(what holds a deploy, the ids the proxy provides, the lines shown for the rest)."""
    holding, provided, shown = [], [], []
    for message in messages:
        ident = str(message.get("id") or "")
        if ident in PROVIDED:
            provided.append(ident)
        elif int(message.get("level", 0)) >= ERROR or ident.startswith("security."):
            holding.append(message)
        else:
            shown.append(f"{ident or 'warning'}: {message['msg']} (not fatal)")
    if provided:
        what = sorted({PROVIDED[ident] for ident in provided})
        shown.insert(
            0, f"{', '.join(sorted(provided))}: provided by onebox's proxy ({', '.join(what)})"
        )
    return holding, provided, shown


def gate(
    messages: list[dict], switches: dict[str, dict[str, str]], environment: set[str]
) -> list[str]:
    """Raise for what holds the deploy; return the lines to show for the rest.
    `environment`: the names of the variables the release has (to say which are set)."""
    holding, _, shown = sort(messages)
    if holding:
        raise refusal(holding, switches, environment)
    return shown


def refusal(
    holding: list[dict], switches: dict[str, dict[str, str]], environment: set[str]
) -> AgentError:
    errors = [m for m in holding if int(m.get("level", 0)) >= ERROR]
    ids = [str(m.get("id") or "?") for m in errors or holding]
    headline = "Django's system check found errors" if errors else "Django's deployment check fails"
    lines = []
    for message in errors + [m for m in holding if m not in errors]:
        ident = str(message.get("id") or "?")
        where = f" ({message['obj']})" if message.get("obj") else ""
        lines.append(f"{ident}{where}: {message['msg']}")
        lines.append(f"  fix: {fix_for(ident, message, switches, environment)}")
    return AgentError(
        f"{headline}: {', '.join(ids)}; nothing was changed",
        output="\n".join(lines),
        hint="fix each as its line says, then deploy again; " + SKIP,
        code=ExitCode.CONFIG,
    )


def fix_for(
    ident: str, message: dict, switches: dict[str, dict[str, str]], environment: set[str]
) -> str:
    setting = {"security.W018": "DEBUG", "security.W009": "SECRET_KEY"}.get(ident)
    switch = switches.get(setting or "")
    if switch:  # the settings read it from a variable of the project's own
        var = switch["var"]
        where = f"{FIXES[ident]}: {switch['where']} reads it from {var} (`{switch['source']}`)"
        if var in environment:
            return f"{where}, set on the server: `onebox env unset {var}`, or set it right"
        return f"{where}: set it with `onebox env set {var}=...`"
    return FIXES.get(ident) or str(message.get("hint") or "see Django's message")


def report(shown: list[str]) -> None:
    for line in shown:
        emit("log", text=f"django check --deploy: {line}")
