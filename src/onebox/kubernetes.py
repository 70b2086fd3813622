"""Kubernetes manifests for a release onebox exported (`onebox export kubernetes`).

What runs on the box maps onto plain Kubernetes objects, no operator and no Helm:

- a Deployment of the web pods: gunicorn (the release's onebox_wsgi, its health check)
  and, beside it in the pod, Caddy from the same image serving the static and media
  files and passing the rest to gunicorn on the pod's loopback (as on the box). A rolling
  update never goes below the wanted count (maxUnavailable 0), and a pod takes traffic
  only once /.onebox/health answers (readiness: Django set up, the database answering);
- a Job running the migrations, named by the release: applied once, before the new pods
  start (their init container waits until `migrate --check` passes, so an update that
  comes before its Job finished waits instead of serving an unmigrated database);
- a Service and an Ingress (TLS for [server] domain), Deployments for [processes],
  CronJobs for [schedule];
- the release's settings as a ConfigMap, and the app's secrets as a Secret, in a file of
  its own (mode 0600) never to be committed;
- a PersistentVolumeClaim for what the box keeps in its shared folder (media; SQLite).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from onebox.agent.paths import AppPaths
from onebox.config import Config

Manifest = dict[str, Any]

PROXY_PORT, APP_PORT = 8080, 8000
HEALTH = "/.onebox/health"
WORKER_MIB = 150  # what a worker is given on the box (agent/sizing.py), as the request
CALENDAR_SHORTHANDS = {
    "minutely": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}
CRON = re.compile(r"^(@\w+|(\S+\s+){4}\S+)$")
DAILY_AT = re.compile(r"^(\*-\*-\*\s+)?(\d{1,2}):(\d{2})(:00)?$")


def caddyfile(app: str, urls: dict[str, str]) -> str:
    """The pod's proxy: static and media files from the release and the volume, the rest
    to gunicorn. HTTPS ends at the Ingress, whose X-Forwarded-* headers it trusts from
    private addresses only."""
    static = urls.get("static_url", "/static/")
    media = urls.get("media_url", "/media/")
    paths = AppPaths(app)  # (the image keeps the server's layout)
    return f"""{{
	admin off
	auto_https off
}}

:{PROXY_PORT} {{
	encode zstd gzip
	header {{
		?X-Content-Type-Options "nosniff"
		?Referrer-Policy "same-origin"
		?X-Frame-Options "DENY"
		-Server
	}}
	handle_path {static}* {{
		root * {paths.current}/.onebox/static
		@hashed path_regexp \\.[0-9a-f]{{12}}\\.[A-Za-z0-9]+$
		header @hashed Cache-Control "public, max-age=31536000, immutable"
		header ?Cache-Control "public, max-age=3600"
		file_server
	}}
	handle_path {media}* {{
		root * {paths.media}
		header X-Content-Type-Options "nosniff"
		file_server
	}}
	handle {{
		reverse_proxy 127.0.0.1:{APP_PORT} {{
			trusted_proxies private_ranges
			lb_try_duration 10s
			lb_try_interval 100ms
		}}
	}}
}}
"""


def cron_schedule(when: str) -> str:
    """A [schedule] `when` as a CronJob's schedule: a cron line as it is, systemd's
    shorthands and daily times converted; anything else is refused with what to write."""
    text = when.strip()
    if text.lower() in CALENDAR_SHORTHANDS:
        return CALENDAR_SHORTHANDS[text.lower()]
    daily = DAILY_AT.match(text)
    if daily:
        return f"{int(daily.group(3))} {int(daily.group(2))} * * *"
    if CRON.match(text) and not text.startswith("@"):
        return text
    if text.startswith("@") and text[1:].lower() in CALENDAR_SHORTHANDS:
        return CALENDAR_SHORTHANDS[text[1:].lower()]
    raise ValueError(
        f"{when!r} has no cron equivalent onebox knows: write it as a cron line "
        '(when = "30 3 * * *") for the export'
    )


def manifests(
    config: Config, exported: dict[str, Any], image: str, secrets: dict[str, str]
) -> tuple[list[Manifest], Manifest, list[str]]:
    """(the objects, the Secret, warnings) for the exported release."""
    app = config.app.name
    release = exported["release"]
    settings = dict(exported["settings"])
    sqlite = config.database.engine == "sqlite" and not config.database.url
    warnings = []
    if sqlite:
        warnings.append(
            "SQLite: one web pod, on a ReadWriteOnce volume (a second pod would not see its "
            "writes); move the database to PostgreSQL or MariaDB to run more"
        )
    elif not config.database.url:
        warnings.append(
            f"the {config.database.engine} database runs on the box: set DATABASE_URL in "
            f"{app}-secret.yaml to a server the cluster reaches"
        )
    workers = int(settings.get("ONEBOX_WORKERS") or 2)
    shared = Shared(app, config, exported, image)
    objects: list[Manifest] = [
        config_map(f"{app}-settings", app, settings),
        config_map(f"{app}-proxy", app, {"Caddyfile": caddyfile(app, exported.get("urls", {}))}),
        volume_claim(app),
        migrate_job(shared, release),
        web_deployment(
            shared,
            replicas=1 if sqlite else 2,
            workers=workers,
            threads=int(settings.get("ONEBOX_THREADS") or 1),
            worker_class=settings.get("ONEBOX_WORKER_CLASS") or "sync",
            served=(config.app.asgi, True) if config.app.asgi else (config.app.wsgi, False),
        ),
        service(app),
        ingress(app, config.server.domain),
    ]
    for name, process in config.processes.items():
        objects.append(
            process_deployment(shared, name, process.argv, process.replicas, process.stop_timeout)
        )
    for name, schedule in config.schedule.items():
        objects.append(
            cron_job(shared, name, schedule.argv, cron_schedule(schedule.when), schedule.timeout)
        )
    return objects, secret(app, secrets), warnings


class Shared:
    """What every pod of the app has: the image, the environment, the volume, the user."""

    def __init__(self, app: str, config: Config, exported: dict[str, Any], image: str) -> None:
        self.app = app
        self.image = image
        self.uid = int(exported.get("uid", 10001))
        self.workdir = exported["workdir"]
        self.paths = AppPaths(app)  # (the image keeps the server's layout)
        self.python = f"{self.paths.current}/.venv/bin/python"
        self.manage = f"{self.paths.current}/{config.app.manage}"

    def header(self, api_version: str, kind: str, name: str, component: str) -> Manifest:
        """An object's apiVersion, kind and metadata, labelled as the app's `component`."""
        labels = {"app.kubernetes.io/component": component}
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": _meta(name, self.app, **labels),
        }

    def labels(self, component: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.app, "app.kubernetes.io/component": component}

    def container(self, name: str, command: list[str], **extra: Any) -> Manifest:
        return {
            "name": name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": command,
            "workingDir": self.workdir,
            "envFrom": [
                {"configMapRef": {"name": f"{self.app}-settings"}},
                {"secretRef": {"name": f"{self.app}-secrets"}},
            ],
            "volumeMounts": [
                {"name": "shared", "mountPath": str(self.paths.shared)},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            **extra,
        }

    def pod(self, containers: list[Manifest], **extra: Any) -> Manifest:
        return {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": self.uid,
                "runAsGroup": self.uid,
                "fsGroup": self.uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            "volumes": [
                {"name": "shared", "persistentVolumeClaim": {"claimName": f"{self.app}-data"}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "proxy", "configMap": {"name": f"{self.app}-proxy"}},
            ],
            **extra,
        }


def _meta(name: str, app: str, **labels: str) -> Manifest:
    return {"name": name, "labels": {"app.kubernetes.io/name": app, **labels}}


def config_map(name: str, app: str, data: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, app), "data": data}


def secret(app: str, values: dict[str, str]) -> Manifest:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(f"{app}-secrets", app),
        "type": "Opaque",
        "data": encoded,
    }


def volume_claim(app: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(f"{app}-data", app),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def migrate_job(shared: Shared, release: str) -> Manifest:
    migrate = shared.container("migrate", [shared.python, shared.manage, "migrate", "--noinput"])
    return {
        **shared.header("batch/v1", "Job", f"{shared.app}-migrate-{release}", "migrate"),
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 7 * 86400,
            "template": {
                "metadata": {"labels": shared.labels("migrate")},
                "spec": shared.pod([migrate], restartPolicy="Never"),
            },
        },
    }


def web_deployment(
    shared: Shared,
    replicas: int,
    workers: int,
    threads: int,
    worker_class: str,
    served: tuple[str, bool],
) -> Manifest:
    """`served`: the app's WSGI or ASGI application ("mvp.wsgi:application"), and
    whether it is ASGI (then uvicorn's worker, as on the box)."""
    application, asgi = served
    if asgi:
        worker_class, threads = "uvicorn_worker.UvicornWorker", 1
    gunicorn = shared.container(
        "app",
        [
            shared.python,
            "-m",
            "gunicorn",
            "onebox_asgi:application" if asgi else "onebox_wsgi:application",
            "--bind",
            f"127.0.0.1:{APP_PORT}",
            # (as the release was sized on the box: its release.env's figures)
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            worker_class,
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--error-logfile",
            "-",
        ],
        # onebox_wsgi (or _asgi) answers the health check and hands the rest to the app's
        env=[{"name": "ONEBOX_ASGI" if asgi else "ONEBOX_WSGI", "value": application}],
        livenessProbe={"tcpSocket": {"port": APP_PORT}, "periodSeconds": 20, "failureThreshold": 6},
        resources={"requests": {"cpu": "100m", "memory": f"{workers * WORKER_MIB}Mi"}},
    )
    proxy = shared.container(
        "proxy",
        [
            "/usr/bin/caddy",
            "run",
            "--config",
            "/etc/proxy/Caddyfile",
            "--adapter",
            "caddyfile",
        ],
        ports=[{"name": "http", "containerPort": PROXY_PORT}],
        env=[
            {"name": "XDG_DATA_HOME", "value": "/tmp"},
            {"name": "XDG_CONFIG_HOME", "value": "/tmp"},
        ],
        readinessProbe={"httpGet": {"path": HEALTH, "port": "http"}, "periodSeconds": 5},
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}},
    )
    proxy["volumeMounts"].append({"name": "proxy", "mountPath": "/etc/proxy"})
    wait = shared.container(
        "wait-for-migrations",
        [
            "/bin/sh",
            "-c",
            f"until {shared.python} {shared.manage} migrate --check "
            ">/dev/null; do echo 'waiting for the migrate Job'; sleep 5; done",
        ],
    )
    return {
        **shared.header("apps/v1", "Deployment", f"{shared.app}-web", "web"),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": shared.labels("web")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": shared.labels("web")},
                "spec": shared.pod(
                    [gunicorn, proxy], initContainers=[wait], terminationGracePeriodSeconds=30
                ),
            },
        },
    }


def process_deployment(
    shared: Shared, name: str, argv: list[str], replicas: int, stop_timeout: int
) -> Manifest:
    component = f"process-{name}"
    return {
        **shared.header("apps/v1", "Deployment", f"{shared.app}-{name}", component),
        "spec": {
            "replicas": replicas,
            # a scheduler must never run twice, not even for a moment: old pods go first
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": shared.labels(component)},
            "template": {
                "metadata": {"labels": shared.labels(component)},
                "spec": shared.pod(
                    [shared.container(name, argv)], terminationGracePeriodSeconds=stop_timeout
                ),
            },
        },
    }


def cron_job(shared: Shared, name: str, argv: list[str], schedule: str, timeout: int) -> Manifest:
    component = f"schedule-{name}"
    return {
        **shared.header("batch/v1", "CronJob", f"{shared.app}-{name}", component),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",  # (as a systemd timer: no second run beside one)
            "jobTemplate": {
                "spec": {
                    "activeDeadlineSeconds": timeout,
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": shared.labels(component)},
                        "spec": shared.pod([shared.container(name, argv)], restartPolicy="Never"),
                    },
                }
            },
        },
    }


def service(app: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, app),
        "spec": {
            "selector": {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def ingress(app: str, domain: str) -> Manifest:
    rule: Manifest = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": app, "port": {"name": "http"}}},
                }
            ]
        }
    }
    spec: Manifest = {"rules": [{**({"host": domain} if domain else {}), **rule}]}
    if domain:
        spec["tls"] = [{"hosts": [domain], "secretName": f"{app}-tls"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(app, app),
        "spec": spec,
    }
