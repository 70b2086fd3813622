"""Setup's first step: the security updates a server lacks, installed and named."""

from __future__ import annotations

from onebox.agent import updates


def test_waiting_updates_are_installed_and_the_ones_that_failed_are_named(monkeypatch):
    pending = iter([["libssl3", "openssl"], ["openssl"]])
    ran: list[list[str]] = []
    monkeypatch.setattr(updates, "pending_security_updates", lambda: next(pending))
    monkeypatch.setattr(updates, "run", lambda argv, **kwargs: ran.append(list(argv)))
    notes: list[str] = []
    assert updates.install_waiting(notes)
    assert (
        ran[0][:6] == ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq"]
        and "--only-upgrade" in ran[0]
    )
    assert ran[0][-2:] == ["libssl3", "openssl"]  # those packages, nothing else
    assert "--force-confold" in " ".join(ran[0])  # a config file you changed stays yours
    assert notes[0] == "installed 1 security update: libssl3"
    assert notes[1].startswith("1 security update did not install (openssl)")


def test_nothing_waiting_runs_nothing(monkeypatch):
    monkeypatch.setattr(updates, "pending_security_updates", lambda: [])
    monkeypatch.setattr(updates, "run", lambda argv, **kwargs: 1 / 0)
    notes: list[str] = []
    assert not updates.install_waiting(notes) and notes == []


def test_only_security_archive_versions_count_as_waiting(monkeypatch):
    simulated = (
        "Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security"
        " [amd64])\n"
        "Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])\n"
    )
    result = type("R", (), {"stdout": simulated})()
    monkeypatch.setattr(updates, "run", lambda argv, **kwargs: result)
    assert updates.pending_security_updates() == ["libssl3"]


def test_setup_restarts_stale_services_once_its_packages_are_in(monkeypatch):
    from onebox.agent import provision

    calls: list[str] = []
    monkeypatch.setattr(provision, "refresh_package_lists", lambda stale_after: None)
    monkeypatch.setattr(updates, "install_waiting", lambda notes: calls.append("updates") or 1)
    monkeypatch.setattr(provision, "apt_install", lambda p: calls.append("packages") or [])
    monkeypatch.setattr(updates, "restart_safe_services", lambda: calls.append("restart"))
    assert provision.ensure_packages(["needrestart"], {}, [])
    assert calls == ["updates", "packages", "restart"]  # needrestart installed before it runs
    calls.clear()
    assert not provision.ensure_packages(["x"], {"skip": {"updates": "no"}}, [])
    assert calls == ["packages"]
