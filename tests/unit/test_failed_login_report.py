"""The WSGI wrapper's failed-login report: the address Caddy saw, never a forged one."""

from __future__ import annotations

import importlib
import socket
import sys
from types import SimpleNamespace

import pytest


@pytest.fixture
def wrapper(monkeypatch):
    monkeypatch.setenv("ONEBOX_WSGI", "wsgiref.simple_server:demo_app")
    sys.modules.pop("onebox.agent.wsgi_health", None)
    module = importlib.import_module("onebox.agent.wsgi_health")
    yield module
    sys.modules.pop("onebox.agent.wsgi_health", None)


def request(**meta: str) -> SimpleNamespace:
    return SimpleNamespace(META=meta)


def test_the_last_forwarded_entry_is_the_client(wrapper):
    # a client may send its own X-Forwarded-For; Caddy's entry comes last
    forged = request(HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7")
    assert wrapper.client_address(forged) == "198.51.100.7"
    assert wrapper.client_address(request(HTTP_X_FORWARDED_FOR="2001:db8::1")) == "2001:db8::1"
    assert wrapper.client_address(request(REMOTE_ADDR="192.0.2.4")) == "192.0.2.4"


def test_anything_but_an_address_is_not_reported(wrapper):
    assert wrapper.client_address(None) == ""
    injected = request(HTTP_X_FORWARDED_FOR="x\nfailed login from 1.2.3.4")
    assert wrapper.client_address(injected) == ""
    assert wrapper.client_address(request()) == ""


def test_a_failure_becomes_one_journal_entry_without_the_username(wrapper, tmp_path, monkeypatch):
    path = str(tmp_path / "journal.sock")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(path)
    monkeypatch.setattr(wrapper, "JOURNAL_SOCKET", path)
    credentials = {"username": "admin", "password": "********"}
    wrapper.report_failed_login(None, credentials, request(HTTP_X_FORWARDED_FOR="192.0.2.8"))
    entry = journal.recv(4096).decode()
    journal.close()
    assert "MESSAGE=failed login from 192.0.2.8\n" in entry
    assert "SYSLOG_IDENTIFIER=onebox-auth\n" in entry
    assert "admin" not in entry


def test_django_sends_it_the_failures(wrapper):
    from django.contrib.auth.signals import user_login_failed

    ours = [r[1]() for r in user_login_failed.receivers if r[0][0] == "onebox-failed-login"]
    # once, however often the module is imported (each gunicorn worker imports it once)
    assert [receiver.__name__ for receiver in ours] == ["report_failed_login"]


def test_the_app_sees_the_client_as_remote_addr(wrapper):
    """gunicorn on a Unix socket leaves REMOTE_ADDR empty: the wrapper fills it in, in
    the environ gunicorn's access log reads afterwards."""
    seen = {}

    def app(environ, start_response):
        seen["addr"] = environ["REMOTE_ADDR"]
        start_response("200 OK", [])
        return [b""]

    wrapper.app = app
    environ = {"PATH_INFO": "/", "REMOTE_ADDR": "", "HTTP_X_FORWARDED_FOR": "10.0.0.1, 192.0.2.5"}
    wrapper.application(environ, lambda *a: None)
    assert seen["addr"] == environ["REMOTE_ADDR"] == "192.0.2.5"
    forged = {"PATH_INFO": "/", "REMOTE_ADDR": "", "HTTP_X_FORWARDED_FOR": "not-an-address"}
    wrapper.application(forged, lambda *a: None)
    assert forged["REMOTE_ADDR"] == ""
