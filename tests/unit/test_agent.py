import io
import json
import tarfile

from onebox.agent.build import _url_prefix, release_env
from onebox.agent.django import hint_for
from onebox.agent.paths import AppPaths
from onebox.agent.requests import FactsRequest
from onebox.agent.system import format_env_file, read_env_file
from onebox.remote import pack

from .factories import deploy_request


def test_env_file_round_trip(tmp_path):
    values = {"SECRET_KEY": 'a"b\\c$d e', "EMPTY": "", "URL": "sqlite:////srv/x/db.sqlite3"}
    path = tmp_path / "app.env"
    path.write_text(format_env_file(values, "header\nline two"))
    assert read_env_file(path) == values
    assert path.read_text().startswith("# header\n# line two\n")


def test_hints_for_common_django_failures():
    assert "onebox env set STRIPE_KEY=" in hint_for("KeyError: 'STRIPE_KEY'")
    assert "onebox env set SECRET_KEY=" in hint_for(
        "ImproperlyConfigured: Set the SECRET_KEY environment variable"
    )
    assert "'whitenoise' is not installed" in hint_for(
        "ModuleNotFoundError: No module named 'whitenoise'"
    )


def test_release_env_holds_no_secrets():
    text = format_env_file(
        release_env(
            deploy_request(settings="s", release_id="r1", env={"LOG_LEVEL": "debug"}),
            AppPaths("shop"),
        )
    )
    assert 'ALLOWED_HOSTS="shop.test"' in text
    assert 'CSRF_TRUSTED_ORIGINS="https://shop.test"' in text
    assert 'LOG_LEVEL="debug"' in text
    assert "SECRET" not in text


def test_url_prefix():
    assert _url_prefix("static/") == "/static/"
    assert _url_prefix("/assets") == "/assets/"
    assert _url_prefix("https://cdn.example.com/s/") == "/.onebox-not-served-here/"


def test_pack_carries_agent_and_request(tmp_path):
    (tmp_path / "manage.py").write_text("print()")
    stream = pack(FactsRequest(), tmp_path, [__import__("pathlib").Path("manage.py")])
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        names = tar.getnames()
        request = json.load(tar.extractfile("request.json"))
        assert tar.getmember("request.json").mode == 0o600
    assert "onebox_agent/main.py" in names and "payload/manage.py" in names
    assert request["action"] == "facts" and "@" in request["by"]  # who, for history


def test_env_file_lines_end_at_newlines_only(tmp_path):
    """A CR, a form feed or U+2028 inside a value is not a line break (systemd's reading)."""
    path = tmp_path / "app.env"
    path.write_text('API_KEY="sek\rrit"\nOTHER="a\u2028B=phantom"\nX="\x0cy"\n')
    assert read_env_file(path) == {"API_KEY": "sek\rrit", "OTHER": "a\u2028B=phantom", "X": "\x0cy"}


def test_env_entries_systemd_cannot_hold_are_refused():
    from onebox.agent.system import MAX_ENTRY, env_entry_problem

    assert env_entry_problem("API_KEY", "sekrit") == ""
    assert env_entry_problem("TAB", "a\tb") == ""
    assert "control character" in env_entry_problem("API_KEY", "sekrit\r")
    assert "control character" in env_entry_problem("API_KEY", "a\nb")
    assert "not a variable name" in env_entry_problem("ÄPFEL", "x")
    assert "not a variable name" in env_entry_problem("1X", "x")
    assert "MAX_ARG_STRLEN" in env_entry_problem("BIG", "x" * MAX_ENTRY)
    assert env_entry_problem("B", "x" * (MAX_ENTRY - 2)) == ""


def test_user_text_in_steps_is_never_markup(capsys):
    """A build command holding `[/]` once crashed the client (rich markup) mid-deploy."""
    from onebox.output import HumanReporter

    reporter = HumanReporter(verbose=True)
    for name in ("build: echo [/] [bold]x", "build: [red]"):
        reporter.event({"event": "step", "name": name, "status": "start"})
        reporter.event(
            {"event": "step", "name": name, "status": "changed", "seconds": 1, "detail": "[/]"}
        )
    assert "build: echo [/] [bold]x" in capsys.readouterr().err
