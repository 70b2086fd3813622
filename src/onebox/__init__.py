"""onebox: run a Django project in production on one Debian server you own."""

__version__ = "0.1.0"
