"""Under GitOps (`helm template`, no lookup) the rendering is the same every time.

Generated passwords come from `lookup`, which `helm template` cannot do: each render would
generate new ones. With every secret from an existing Secret, nothing is generated.
"""

from __future__ import annotations

from pathlib import Path

from chart_render import Object, Rendering, env_of, name_of, parse, template, values_args


def _container(rendering: Rendering, kind: str, component: str, name: str) -> Object:
    pod = rendering.get(kind, component)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    return container


def test_gitops_values_render_the_same_every_time(helm: Path) -> None:
    first = template(helm, *values_args("gitops-values"))
    second = template(helm, *values_args("gitops-values"))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_default_values_generate_new_passwords_under_helm_template(helm: Path) -> None:
    # Why the existing Secrets are required: without them two renders differ.
    assert template(helm).stdout != template(helm).stdout


def test_gitops_values_create_no_secret(renderings: dict[str, Rendering]) -> None:
    assert renderings["gitops-values"].of_kind("Secret") == []


def test_built_in_servers_read_their_password_from_the_existing_secret(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["gitops-values"]
    postgresql = env_of(_container(rendering, "StatefulSet", "postgresql", "postgresql"))
    assert postgresql["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "beatkeeper-postgresql-auth",
        "key": "password",
    }
    redis = env_of(_container(rendering, "StatefulSet", "redis", "redis"))
    for variable in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        assert redis[variable]["valueFrom"]["secretKeyRef"] == {
            "name": "beatkeeper-redis-auth",
            "key": "password",
        }


def test_clients_build_the_urls_from_the_existing_secrets(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["gitops-values"]
    env = env_of(_container(rendering, "Deployment", "worker", "worker"))
    names = list(env)
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("BUILTIN_POSTGRESQL_PASSWORD") < names.index("BEATKEEPER_DATABASE_URL")
    assert names.index("BUILTIN_REDIS_PASSWORD") < names.index("BEATKEEPER_BROKER_URL")
    assert env["BUILTIN_POSTGRESQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "beatkeeper-postgresql-auth",
        "key": "password",
    }
    assert env["BEATKEEPER_DATABASE_URL"]["value"] == (
        "postgresql+psycopg://beatkeeper:$(BUILTIN_POSTGRESQL_PASSWORD)"
        "@bk-beatkeeper-postgresql:5432/beatkeeper"
    )
    assert env["BEATKEEPER_BROKER_URL"]["value"] == (
        "redis://:$(BUILTIN_REDIS_PASSWORD)@bk-beatkeeper-redis:6379/0"
    )


def test_flower_reads_its_cookie_key_from_the_existing_secret(
    renderings: dict[str, Rendering],
) -> None:
    env = env_of(_container(renderings["gitops-values"], "Deployment", "flower", "flower"))
    assert env["FLOWER_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "beatkeeper-flower-cookie",
        "key": "cookie-secret",
    }


def test_keda_reads_the_redis_password_from_the_existing_secret(helm: Path) -> None:
    result = template(helm, *values_args("gitops-values"), "--set", "worker.keda.enabled=true")
    assert result.returncode == 0, result.stderr

    (auth,) = [obj for obj in parse(result.stdout) if obj["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "beatkeeper-redis-auth", "key": "password"}
    ]
    assert name_of(auth) == "bk-beatkeeper-worker"
