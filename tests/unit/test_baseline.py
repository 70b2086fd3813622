"""login.defs: the active settings change, the comments that mention them do not."""

from __future__ import annotations

from onebox.agent import baseline


def test_login_defs_settings_are_set_once_and_comments_stay(tmp_path, monkeypatch):
    path = tmp_path / "login.defs"
    path.write_text(
        "# UMASK is the default umask value for pam_umask\n"
        "#\tPASS_MAX_DAYS\tMaximum number of days a password may be used.\n"
        "UMASK\t\t022\nPASS_MAX_DAYS\t99999\n#SHA_CRYPT_MIN_ROUNDS 5000\n"
    )
    monkeypatch.setattr(baseline, "LOGIN_DEFS", path)
    monkeypatch.setattr(
        baseline, "write_file", lambda target, text, mode: target.write_text(text) > 0
    )
    assert baseline.ensure_login_defs()
    text = path.read_text()
    assert "# UMASK is the default umask value for pam_umask\n" in text
    assert "UMASK\t\t027\n" in text and "UMASK\t\t022" not in text
    assert "PASS_MAX_DAYS\t\t365\n" in text and "#SHA_CRYPT_MIN_ROUNDS 5000\n" in text
    assert "SHA_CRYPT_MIN_ROUNDS\t\t100000\n" in text
    assert not baseline.ensure_login_defs()  # a second run changes nothing
