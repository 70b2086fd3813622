"""One error hierarchy for the whole client; the CLI turns each into a short message.

Every error carries what went wrong (`message`), what to do about it (`hint`) and,
when a remote command failed, the host, the command and the tail of its output.
Exit codes are named so that scripts can tell failures apart.
"""

from __future__ import annotations

from onebox.agent.protocol import ExitCode

__all__ = ["ExitCode"]  # (defined once, with the agent, which exits with the same codes)


class OneboxError(Exception):
    """Base of every error onebox reports to the user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        host: str | None = None,
        command: str | None = None,
        output: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.host = host
        self.command = command
        self.output = output

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "error": type(self).__name__,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        for key in ("hint", "host", "command", "output"):
            value = getattr(self, key)
            if value:
                data[key] = value
        return data


class ConfigError(OneboxError):
    exit_code = ExitCode.CONFIG


class ProjectError(ConfigError):
    """The directory is not a Django project onebox can deploy."""


class ConnectionFailed(OneboxError):
    exit_code = ExitCode.CONNECTION


class HostKeyError(OneboxError):
    exit_code = ExitCode.HOST_KEY


class UnsupportedError(OneboxError):
    exit_code = ExitCode.UNSUPPORTED


class RemoteStepFailed(OneboxError):
    """A step run by the server-side agent failed; the server kept what it served."""


class LockedError(OneboxError):
    exit_code = ExitCode.LOCKED
