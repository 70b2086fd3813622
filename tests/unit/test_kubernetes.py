"""The export's manifests (onebox/kubernetes.py) against Kubernetes' own schemas, and the
OCI image writer (agent/oci.py): what the e2e test cannot vary."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from onebox import kubernetes
from onebox.agent import export, oci
from onebox.config import Config

EXPORTED = {
    "release": "20261203-133403-892",
    "uid": 10001,
    "urls": {"static_url": "/assets/", "media_url": "/uploads/"},
    "settings": {
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "ONEBOX_WORKERS": "3",
        "ONEBOX_THREADS": "4",
        "ONEBOX_WORKER_CLASS": "gthread",
    },
    "workdir": "/srv/shop/current/src",
}


def config(**sections: Any) -> Config:
    app = {
        "name": "shop",
        "settings": "shop.settings",
        "wsgi": "shop.wsgi:application",
        "manage": "src/manage.py",
    }
    return Config.model_validate({"app": {**app, **sections.pop("app", {})}, **sections})


def objects_of(cfg: Config, secrets: dict[str, str] | None = None) -> tuple[dict, dict, list]:
    objects, secret, warnings = kubernetes.manifests(
        cfg, EXPORTED, "reg.example/shop:1", secrets or {}
    )
    for manifest in [*objects, secret]:
        kubernetes_validate.validate(manifest, "1.31", strict=True)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}, secret, warnings


def test_sqlite_runs_one_web_pod_and_says_why():
    found, _, warnings = objects_of(config())
    assert found["Deployment/shop-web"]["spec"]["replicas"] == 1
    assert warnings and warnings[0].startswith("SQLite: one web pod")


def test_an_external_database_runs_two_web_pods_that_never_drop_below_that():
    cfg = config(database={"engine": "postgresql", "url": "postgresql://shop@db.internal/shop"})
    found, _, warnings = objects_of(cfg)
    web = found["Deployment/shop-web"]["spec"]
    assert web["replicas"] == 2 and warnings == []
    assert web["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = web["template"]["spec"]
    app, proxy = pod["containers"]
    assert app["command"][app["command"].index("--workers") + 1] == "3"  # (as on the box)
    assert {"name": "ONEBOX_WSGI", "value": "shop.wsgi:application"} in app["env"]
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/.onebox/health"
    assert "migrate" in pod["initContainers"][0]["command"][-1]  # waits for the Job
    assert (
        pod["securityContext"]["runAsNonRoot"] and app["securityContext"]["readOnlyRootFilesystem"]
    )


def test_a_database_on_the_box_is_named_as_what_to_change():
    _, _, warnings = objects_of(config(database={"engine": "postgresql"}))
    assert "DATABASE_URL" in warnings[0]


def test_the_migrate_job_is_named_by_its_release_and_runs_manage_py_where_it_is():
    found, _, _ = objects_of(config())
    job = found["Job/shop-migrate-20261203-133403-892"]["spec"]["template"]["spec"]
    assert job["restartPolicy"] == "Never"
    assert job["containers"][0]["command"][1:] == [
        "/srv/shop/current/src/manage.py",
        "migrate",
        "--noinput",
    ]
    assert job["containers"][0]["workingDir"] == "/srv/shop/current/src"


def test_processes_and_schedules_become_deployments_and_cron_jobs():
    cfg = config(
        processes={
            "worker": {"command": "celery -A shop worker", "replicas": 2},
            "beat": "celery -A shop beat",
        },
        schedule={
            "sessions": {"command": "python src/manage.py clearsessions", "when": "daily"},
            "report": {"command": "python src/manage.py report", "when": "*/15 * * * *"},
        },
    )
    found, _, _ = objects_of(cfg)
    worker = found["Deployment/shop-worker"]["spec"]
    assert worker["replicas"] == 2 and worker["strategy"] == {"type": "Recreate"}
    assert found["Deployment/shop-beat"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ] == ["celery", "-A", "shop", "beat"]
    assert found["CronJob/shop-sessions"]["spec"]["schedule"] == "0 0 * * *"
    assert found["CronJob/shop-report"]["spec"]["schedule"] == "*/15 * * * *"
    assert found["CronJob/shop-report"]["spec"]["concurrencyPolicy"] == "Forbid"


def test_asgi_apps_get_uvicorns_worker():
    found, _, _ = objects_of(config(app={"asgi": "shop.asgi:application"}))
    app = found["Deployment/shop-web"]["spec"]["template"]["spec"]["containers"][0]
    assert "onebox_asgi:application" in app["command"]
    assert (
        app["command"][app["command"].index("--worker-class") + 1] == "uvicorn_worker.UvicornWorker"
    )


def test_the_secret_holds_the_values_and_nothing_else_does():
    found, secret, _ = objects_of(config(), {"SECRET_KEY": "s3cr3t-value", "DATABASE_URL": "x"})
    assert base64.b64decode(secret["data"]["SECRET_KEY"]) == b"s3cr3t-value"
    assert "s3cr3t-value" not in json.dumps(found)
    assert found["ConfigMap/shop-settings"]["data"]["DJANGO_SETTINGS_MODULE"] == "shop.settings"


def test_the_proxy_serves_the_settings_url_prefixes():
    found, _, _ = objects_of(config())
    caddyfile = found["ConfigMap/shop-proxy"]["data"]["Caddyfile"]
    assert "handle_path /assets/* {" in caddyfile and "handle_path /uploads/* {" in caddyfile
    assert "root * /srv/shop/shared/media" in caddyfile


def test_ingress_has_tls_only_with_a_domain():
    found, _, _ = objects_of(config(server={"domain": "shop.example.com"}))
    assert found["Ingress/shop"]["spec"]["tls"][0]["hosts"] == ["shop.example.com"]
    found, _, _ = objects_of(config())
    assert "tls" not in found["Ingress/shop"]["spec"]


@pytest.mark.parametrize(
    ("when", "cron"),
    [
        ("daily", "0 0 * * *"),
        ("hourly", "0 * * * *"),
        ("03:30", "30 3 * * *"),
        ("*-*-* 04:05:00", "5 4 * * *"),
        ("@weekly", "0 0 * * 1"),
        ("0 */2 * * *", "0 */2 * * *"),
    ],
)
def test_schedules_in_cron(when, cron):
    assert kubernetes.cron_schedule(when) == cron


def test_a_calendar_with_no_cron_equivalent_says_what_to_write():
    with pytest.raises(ValueError, match="write it as a cron line"):
        kubernetes.cron_schedule("Mon..Fri *-*-* 09:00:00")


def test_layers_are_reproducible_and_the_archive_names_its_blobs(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("x\n")
    (root / "dev").mkdir()
    (root / "dev" / "null").write_text("")

    def entries(tar: tarfile.TarFile) -> None:
        oci.add_tree(tar, root, ".", skip=lambda name: name.startswith("/dev/"))

    first = oci.write_layer(tmp_path / "a.tar.gz", entries)
    (root / "etc" / "hostname").touch()  # a newer mtime: clamped, the same digest
    second = oci.write_layer(tmp_path / "b.tar.gz", entries)
    assert first.digest == second.digest and first.diff_id == second.diff_id
    plain = gzip.decompress((tmp_path / "a.tar.gz").read_bytes())
    assert first.diff_id == f"sha256:{hashlib.sha256(plain).hexdigest()}"
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert tar.getnames() == ["dev", "etc", "etc/hostname"]  # /dev's nodes left out
    digest = oci.write_archive(tmp_path / "image.tar", [first], {"Cmd": ["true"]}, "shop:1")
    with tarfile.open(tmp_path / "image.tar") as tar:
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    index = json.loads(blobs["index.json"])
    assert index["manifests"][0]["digest"] == digest
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "shop:1"
    for name, blob in blobs.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(blob).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(blobs[f"blobs/sha256/{digest[7:]}"])
    config_blob = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert config_blob["rootfs"]["diff_ids"] == [first.diff_id]


def test_the_image_base_comes_from_the_servers_own_mirror():
    one_line = "deb [arch=amd64] http://mirror.example/debian bookworm main\n"
    deb822 = "Types: deb\nURIs: http://deb.example/debian\nSuites: trixie trixie-updates\n"
    security = (
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n"
    )
    assert export.mirror_of("bookworm", [one_line]) == "http://mirror.example/debian"
    assert export.mirror_of("trixie", [security + "\n" + deb822]) == "http://deb.example/debian"
    assert export.mirror_of("trixie", []) == "http://deb.debian.org/debian"


def test_the_url_prefixes_are_read_from_the_releases_caddy_site(tmp_path: Path):
    site = tmp_path / "site.caddy"
    site.write_text(
        "\thandle_path /assets/* {\n\t\troot * /srv/shop/current/.onebox/static\n\t}\n"
        "\thandle_path /uploads/* {\n\t\troot * /srv/shop/current/.onebox/media\n\t}\n"
    )
    assert export.url_prefixes(site) == {"static_url": "/assets/", "media_url": "/uploads/"}
    assert export.url_prefixes(tmp_path / "none") == {}


@pytest.mark.parametrize("image", ["shop:v1", "Shop", "reg.example/shop@sha256:ab", "a//b"])
def test_an_image_name_with_a_tag_is_refused_before_connecting(tmp_path: Path, image: str):
    from onebox.api.export import export_kubernetes
    from onebox.config import Project
    from onebox.errors import ConfigError

    project = Project(root=tmp_path, source=tmp_path / "onebox.toml", config=config())
    with pytest.raises(ConfigError, match="not an image name"):
        export_kubernetes(project, None, None, output=tmp_path / "k8s", image=image)  # type: ignore[arg-type]
