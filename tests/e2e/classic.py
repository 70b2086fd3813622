"""A Django + MySQL site set up the classic way, as a blog post of years ago would have it:
Debian's Apache 2.4 and mod_wsgi (daemon mode), the code in /var/www/<app> with a
virtualenv beside it, MariaDB holding the data, static files through `Alias`, TLS with a
self-signed certificate, and the database password in the settings file.

`set_up(server, project)` builds it on a practice server, as root through its console
(no onebox involved): the starting point of test_apache.py and bench/apache.py.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
from pathlib import Path

from onebox import sandbox

APP = "inventory"
DOMAIN = f"{APP}.test"
CODE = Path("/var/www") / APP
CERT = Path(f"/etc/ssl/certs/{APP}.pem")
KEY = Path(f"/etc/ssl/private/{APP}.key")
VHOST = Path(f"/etc/apache2/sites-available/{APP}.conf")
# The whole database as text, for comparing before and after.
DUMP = f"mariadb-dump --skip-dump-date --skip-comments --order-by-primary {APP}"
PACKAGES = [
    "apache2",
    "libapache2-mod-wsgi-py3",
    "mariadb-server",
    "python3-venv",
    "python3-dev",
    "build-essential",
    "pkg-config",
    "default-libmysqlclient-dev",
    "openssl",
]

SITE = f"""<VirtualHost *:80>
    ServerName {DOMAIN}
    Redirect permanent / https://{DOMAIN}/
</VirtualHost>

<VirtualHost *:443>
    ServerName {DOMAIN}
    ServerAdmin webmaster@{DOMAIN}

    SSLEngine on
    SSLCertificateFile {CERT}
    SSLCertificateKeyFile {KEY}

    Alias /static/ {CODE}/static/
    <Directory {CODE}/static>
        Require all granted
    </Directory>
    Alias /media/ {CODE}/media/
    <Directory {CODE}/media>
        Require all granted
    </Directory>

    WSGIDaemonProcess {APP} python-home={CODE}/venv python-path={CODE} \\
        processes=2 threads=5 display-name=%{{GROUP}}
    WSGIProcessGroup {APP}
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIScriptAlias / {CODE}/{APP}/wsgi.py
    <Directory {CODE}/{APP}>
        <Files wsgi.py>
            Require all granted
        </Files>
    </Directory>

    SetEnv INVENTORY_REGION eu-central

    ErrorLog ${{APACHE_LOG_DIR}}/{APP}_error.log
    CustomLog ${{APACHE_LOG_DIR}}/{APP}_access.log combined
</VirtualHost>
"""

# The database and its user, as the settings name them (the password has a quote in it).
DATABASE = """CREATE DATABASE IF NOT EXISTS inventory CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'inventory'@'localhost' IDENTIFIED BY 'Wh1te-Rabbit\\'s-pass';
GRANT ALL PRIVILEGES ON inventory.* TO 'inventory'@'localhost';
"""

DATA = """from stock.models import Item
for n in range(1, 201):
    Item.objects.create(name=f"part {n} \\u00e9\\u00e8 'quoted'", quantity=n)
"""


def root(server_name: str, command: str, timeout: float = 600, input: bytes = b"") -> str:
    """A shell command as root on the practice server, through its console."""
    argv = sandbox.load(server_name).console(command)
    result = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{command!r} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def project_tar(project: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(project.rglob("*")):
            if "__pycache__" in path.parts or path.name == "onebox.toml":
                continue
            tar.add(path, arcname=str(path.relative_to(project)), recursive=False)
    return buffer.getvalue()


def set_up(server_name: str, project: Path) -> str:
    """The classic site on the server; returns its certificate (PEM) for the clients."""
    env = "DEBIAN_FRONTEND=noninteractive"
    root(server_name, f"apt-get update -qq && {env} apt-get install -y -qq {' '.join(PACKAGES)}")
    root(server_name, f"mkdir -p {CODE} && tar -C {CODE} -x", input=project_tar(project))
    venv = CODE / "venv"
    pip = f"{venv}/bin/pip install -q -r {CODE}/requirements.txt"
    root(server_name, f"python3 -m venv {venv} && {pip}")
    root(server_name, f"mariadb -e {shlex.quote(DATABASE)}")
    manage = f"cd {CODE} && {venv}/bin/python manage.py"
    root(server_name, f"{manage} migrate --noinput -v0 && {manage} collectstatic --noinput -v0")
    root(server_name, f"{manage} shell -c {shlex.quote(DATA)}")
    # An upload from years of use: nothing of it may be lost.
    photos = CODE / "media" / "photos"
    root(server_name, f"mkdir -p {photos} && echo 'a photo' > {photos}/p1.jpg")
    root(server_name, f"chown -R www-data:www-data {CODE}/media")
    subject = f"-subj /CN={DOMAIN} -addext subjectAltName=DNS:{DOMAIN}"
    root(
        server_name,
        f"openssl req -x509 -newkey rsa:2048 -nodes -days 30 {subject} "
        f"-keyout {KEY} -out {CERT} 2>/dev/null && chmod 600 {KEY}",
    )
    root(server_name, f"cat > {VHOST}", input=SITE.encode())
    root(
        server_name,
        f"a2enmod -q ssl wsgi >/dev/null && a2dissite -q 000-default && a2ensite -q {APP} "
        "&& apachectl configtest && systemctl reload apache2",
    )
    return root(server_name, f"cat {CERT}")
