"""Flower is authenticated by default, serves under its prefix, and keeps its secrets."""

from __future__ import annotations

import re

from chart_render import CHART, Object, Rendering, env_of, name_of

TEMPLATES = CHART / "templates"


def _flower(rendering: Rendering) -> Object:
    deployment = rendering.get("Deployment", "flower")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_flower_runs_with_the_documented_options(renderings: dict[str, Rendering]) -> None:
    args = _flower(renderings["default"])["args"]
    assert args[:4] == ["celery", "-A", "beatkeeper_worker", "flower"]
    assert "--port=5555" in args
    assert "--url_prefix=flower" in args
    assert "--max_tasks=10000" in args
    assert "--purge_offline_workers=300" in args
    assert "--xheaders=false" in args
    assert _flower(renderings["ingress-tls-values"])["args"].count("--xheaders=true") == 1


def test_flower_requires_basic_auth_by_default(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    env = env_of(_flower(rendering))
    secret = rendering.get("Secret", "flower")
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": name_of(secret),
        "key": "basic-auth",
    }
    username, password = secret["stringData"]["basic-auth"].split(":")
    assert username == "admin" == secret["stringData"]["username"]
    assert len(password) == 32
    assert password == secret["stringData"]["password"]
    # Sessions survive restarts: the cookie secret is stored, not random per process.
    assert env["FLOWER_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "cookie-secret"


def test_flower_never_opens_its_api_to_anonymous_callers(rendering: Rendering) -> None:
    for _owner, pod in rendering.pod_specs():
        for container in pod["containers"]:
            assert "FLOWER_UNAUTHENTICATED_API" not in env_of(container)


def test_flower_reads_users_from_an_existing_secret(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["external-db-values"]
    env = env_of(_flower(rendering))
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-users",
        "key": "basic-auth",
    }
    assert "password" not in rendering.get("Secret", "flower")["stringData"]


def test_flower_signs_in_with_oauth(renderings: dict[str, Rendering]) -> None:
    env = env_of(_flower(renderings["ingress-tls-values"]))
    assert "FLOWER_BASIC_AUTH" not in env
    assert env["FLOWER_AUTH_PROVIDER"]["value"] == "flower.views.auth.GithubLoginHandler"
    assert env["FLOWER_AUTH"]["value"] == r".*@example\.com"
    assert env["FLOWER_OAUTH2_REDIRECT_URI"]["value"] == "https://ops.example.com/flower/login"
    for name, key in (
        ("FLOWER_OAUTH2_KEY", "client-id"),
        ("FLOWER_OAUTH2_SECRET", "client-secret"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "flower-oauth", "key": key}


def test_flower_probes_its_unauthenticated_healthcheck_under_the_prefix(
    renderings: dict[str, Rendering],
) -> None:
    flower = _flower(renderings["default"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert flower[probe]["httpGet"] == {"path": "/flower/healthcheck", "port": "http"}


def test_ingress_routes_the_flower_prefix_with_tls(renderings: dict[str, Rendering]) -> None:
    ingress = renderings["ingress-tls-values"].get("Ingress", "flower")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "ops-example-com-tls", "hosts": ["ops.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "ops.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/flower"
    assert path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": "bk-beatkeeper-flower", "port": {"name": "http"}}


def test_kind_ingress_matches_every_host(renderings: dict[str, Rendering]) -> None:
    ingress = renderings["values-kind"].get("Ingress", "flower")
    assert "host" not in ingress["spec"]["rules"][0]


def test_generated_secrets_are_looked_up_so_upgrades_keep_them() -> None:
    # `helm template` cannot look anything up (tests/e2e checks a real upgrade keeps the
    # password); here: every random value goes through the one helper that looks up the
    # stored Secret first, and each generated Secret reads its own name.
    helpers = (TEMPLATES / "common" / "_helpers.tpl").read_text()
    kept = helpers[helpers.index('define "beatkeeper.keptRandom"') :]
    assert 'lookup "v1" "Secret" .ctx.Release.Namespace .name' in kept
    random_users = [
        path.relative_to(TEMPLATES).as_posix()
        for path in TEMPLATES.rglob("*")
        if path.is_file() and re.search(r"\brand\w+", path.read_text())
    ]
    assert random_users == ["common/_helpers.tpl"]
    for secret in ("flower/secret.yaml", "postgresql/secret.yaml", "redis/secret.yaml"):
        text = (TEMPLATES / secret).read_text()
        assert 'include "beatkeeper.keptRandom" (dict "ctx" . "name" $name' in text, secret
