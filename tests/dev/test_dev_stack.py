"""`beatkeeper dev` as a user runs it: an example task succeeds in Flower, manifests are
watched, a broken one keeps the previous version, Flower asks for its login and a web page
cannot use it to run tasks, Ctrl-C stops every child and a second start resumes.

Requests to Flower are sent the way a browser sends them: a cross-site ``text/plain`` POST
(a "simple" request, so no CORS preflight) with the attacker's ``Origin``; a request to a
rebound name carries that name in ``Host``. Whether a refused request ran its task is read
from the worker's own "received" lines, after an authorised request of the same task ran.

The tests share one stack (``dev_stack``) and run in file order; the last one stops it and
starts it again.
"""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dev_support import BEATKEEPER, QUICK, TASK, DevStack, dev_env, free_port
from waiting import wait_for

pytestmark = pytest.mark.slow


def test_an_example_task_succeeds_and_flower_shows_it(dev_stack: DevStack) -> None:
    started = time.monotonic()
    runs = wait_for(dev_stack.succeeded, timeout=60, what=f"Flower to show {TASK} succeeded")
    print(f"\nfirst {TASK} success seen in Flower {time.monotonic() - started:.1f}s after ready")
    run = next(iter(runs.values()))
    assert run["result"].startswith("{'completed':")
    assert not any("no task named" in line.lower() for line in dev_stack.lines)


def test_a_schedule_on_its_own_queue_is_consumed(dev_stack: DevStack) -> None:
    task = "examples.outlook.health_check"
    runs = wait_for(lambda: dev_stack.succeeded(task), timeout=60, what=f"{task} to succeed")
    assert next(iter(runs.values()))["result"].startswith("{'status':")
    dev_stack.wait_for(r"worker consumes celery, daily_outlook_queue \(a queue first named later")


def test_start_up_has_no_warnings_meant_for_someone_else(dev_stack: DevStack) -> None:
    dev_stack.wait_for(r"celery@\S+ ready")
    noise = ("RuntimeDirWarning", "Inspect method", "Traceback")
    assert [line for line in dev_stack.lines if any(n in line for n in noise)] == []


def test_cli_commands_in_the_stacks_folder_use_its_database(dev_stack: DevStack) -> None:
    folder = dev_stack.state.parent.parent
    env = dev_env()  # no BEATKEEPER_DATABASE_URL
    trigger = subprocess.run(
        [BEATKEEPER, "trigger", "default/quick"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert trigger.returncode == 0, trigger.stderr
    run_id = re.search(r"run (\S+) of default/quick planned", trigger.stdout)
    assert run_id is not None, trigger.stdout

    def triggered_run_succeeded() -> bool:
        listed = subprocess.run(
            [BEATKEEPER, "runs", "default/quick", "--output", "json"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        runs = json.loads(listed.stdout)
        return any(r["id"] == run_id.group(1) and r["state"] == "succeeded" for r in runs)

    wait_for(triggered_run_succeeded, timeout=60, what="`beatkeeper runs` to list it succeeded")

    elsewhere = subprocess.run(
        [BEATKEEPER, "runs"], cwd=dev_stack.manifests, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert elsewhere.returncode != 0
    assert "or run `beatkeeper dev` in this folder" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr


def test_editing_a_manifest_reapplies_it(dev_stack: DevStack) -> None:
    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK.replace("interval: 5s", "interval: 4s"))
    dev_stack.wait_for(r"default/quick updated: every 4s, next ", after=mark)


def test_a_broken_manifest_is_reported_and_the_previous_version_kept(
    dev_stack: DevStack,
) -> None:
    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK.replace("interval: 5s", "interval: soon"))
    found = dev_stack.wait_for(r"quick\.yaml: (.*) \(previous version kept\)", after=mark)
    assert "interval" in found.group(1)
    before = set(dev_stack.succeeded())
    wait_for(lambda: set(dev_stack.succeeded()) - before, timeout=30, what="another run to succeed")
    assert not any("quick deleted" in line for line in dev_stack.lines[mark:])

    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK)
    dev_stack.wait_for(r"default/quick updated: every 5s", after=mark)


def test_deleting_a_manifest_deletes_its_schedule(dev_stack: DevStack) -> None:
    other = dev_stack.manifests / "other.yaml"
    mark = dev_stack.mark()
    other.write_text(QUICK.replace("name: quick", "name: other"))
    dev_stack.wait_for(r"default/other created: every 5s", after=mark)

    mark = dev_stack.mark()
    other.unlink()
    dev_stack.wait_for(r"default/other deleted \(it is no longer in \S+other\.yaml\)", after=mark)


def test_flower_is_served_under_flower_as_on_the_chart(dev_stack: DevStack) -> None:
    assert dev_stack.flower.endswith(f":{dev_stack.port}/flower")
    status, _, _ = dev_stack.flower_request("/workers", Authorization=dev_stack.authorization())
    assert status == 200


def test_a_fixed_manifest_says_fixed(dev_stack: DevStack) -> None:
    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK.replace("interval: 5s", "interval: x"))
    dev_stack.wait_for(r"quick\.yaml: .* \(previous version kept\)", after=mark)
    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK)
    dev_stack.wait_for(r"quick\.yaml: fixed$", after=mark)


def test_a_schedule_made_with_apply_outlives_the_folder_sync(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    folder = dev_stack.state.parent.parent
    by_hand = tmp_path / "by-hand.yaml"
    by_hand.write_text(QUICK.replace("name: quick", "name: by-hand"))
    applied = subprocess.run(
        [BEATKEEPER, "apply", "-f", str(by_hand)],
        cwd=folder, env=dev_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    mark = dev_stack.mark()
    (dev_stack.manifests / "quick.yaml").write_text(QUICK.replace("interval: 5s", "interval: 6s"))
    dev_stack.wait_for(r"default/quick updated: every 6s", after=mark)
    (dev_stack.manifests / "quick.yaml").write_text(QUICK)
    dev_stack.wait_for(r"default/quick updated: every 5s", after=mark)
    assert not [line for line in dev_stack.lines[mark:] if "by-hand" in line]
    listed = subprocess.run(
        [BEATKEEPER, "runs", "default/by-hand", "-o", "json"],
        cwd=folder, env=dev_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr  # the schedule is still there
    deleted = subprocess.run(
        [BEATKEEPER, "delete", "default/by-hand"],
        cwd=folder, env=dev_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert deleted.stdout.strip() == "default/by-hand deleted", deleted.stdout + deleted.stderr


def test_a_second_stack_on_the_same_state_folder_is_refused(dev_stack: DevStack) -> None:
    result = subprocess.run(
        [BEATKEEPER, "dev", "-f", str(dev_stack.manifests), "--state-dir", str(dev_stack.state),
         "--flower-port", str(free_port())],
        env=dev_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "in use by another beatkeeper dev" in lines[0]
    assert "--state-dir" in lines[0]
    assert (dev_stack.state / "servers.env").exists()  # the first stack is untouched
    assert dev_stack.process is not None
    assert dev_stack.process.poll() is None


OWN_APP = """\
import os

from celery import Celery

import beatkeeper_worker.tracking

app = Celery("myapp", broker=os.environ.get("BEATKEEPER_BROKER_URL"))
beatkeeper_worker.tracking.install(app)


@app.task(name="myapp.hello")
def hello(who):
    return f"hello {who}"
"""
OWN_SCHEDULE = """\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata: {name: own-app, namespace: default}
spec: {task: myapp.hello, args: [dev], interval: 2s, queue: myapp}
"""


def test_your_own_celery_app_runs_its_schedule_as_the_readme_says(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    folder = dev_stack.state.parent.parent
    (tmp_path / "myapp.py").write_text(OWN_APP)
    env = dev_env() | {"PYTHONPATH": str(tmp_path)}
    worker = [sys.executable, "-m", "celery", "-A", "myapp", "worker", "-Q", "myapp", "-c", "1",
              "--without-mingle", "--without-gossip", "-n", f"own-{free_port()}@%h"]  # fmt: skip

    unset = subprocess.run(
        worker, cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert unset.returncode != 0
    assert ". .beatkeeper/dev/servers.env" in unset.stdout + unset.stderr
    assert "Traceback" not in unset.stdout + unset.stderr

    # As the README says: load the stack's URLs, start the worker on the schedule's queue.
    shell = f"set -a; . .beatkeeper/dev/servers.env; set +a; exec {' '.join(worker)}"
    with (tmp_path / "worker.log").open("w") as log:
        process = subprocess.Popen(
            ["sh", "-c", shell], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        (tmp_path / "own-app.yaml").write_text(OWN_SCHEDULE)
        applied = subprocess.run(
            [BEATKEEPER, "apply", "-f", str(tmp_path / "own-app.yaml")],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr

        def runs(state: str) -> list[dict[str, object]]:
            listed = subprocess.run(
                [BEATKEEPER, "runs", "default/own-app", "--state", state, "-o", "json"],
                cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            found: list[dict[str, object]] = json.loads(listed.stdout)
            return found

        succeeded = wait_for(
            lambda: runs("succeeded"), timeout=60, what="a run of the own app's task to succeed"
        )
        assert succeeded[0]["result"] == "'hello dev'"
        assert runs("failed") == []  # the stack's worker did not take the own app's runs
    finally:
        process.terminate()
        process.wait(timeout=30)
        subprocess.run(
            [BEATKEEPER, "delete", "default/own-app"],
            cwd=folder, env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip


NOOP = "beatkeeper.noop"
APPLY = f"/api/task/async-apply/{NOOP}"
FORGED = json.dumps({"kwargs": {}}).encode()
CROSS_SITE = {
    "Content-Type": "text/plain",
    "Origin": "http://attacker.example",
    "Sec-Fetch-Site": "cross-site",
}


def noop_received(stack: DevStack, after: int) -> list[str]:
    return [line for line in stack.lines[after:] if re.search(rf"{NOOP}\[\S+\] received", line)]


def test_a_cross_site_post_without_the_login_is_refused_and_runs_nothing(
    dev_stack: DevStack,
) -> None:
    mark = dev_stack.mark()
    status, headers, _ = dev_stack.flower_request(APPLY, method="POST", body=FORGED, **CROSS_SITE)
    assert status == 403  # refused as cross-site before the login is even asked for
    assert "Access-Control-Allow-Origin" not in headers
    plain = {"Content-Type": "text/plain"}
    status, headers, _ = dev_stack.flower_request(APPLY, method="POST", body=FORGED, **plain)
    assert status == 401
    assert "Access-Control-Allow-Origin" not in headers
    # DNS rebinding: the page's own origin and Host, both naming the attacker's host.
    rebound = {**plain, "Host": "attacker.example:5555", "Origin": "http://attacker.example:5555"}
    status, _, _ = dev_stack.flower_request(APPLY, method="POST", body=FORGED, **rebound)
    assert status == 401
    # Even a browser that has logged in cannot be made to post from another site.
    login = {"Authorization": dev_stack.authorization()}
    status, _, _ = dev_stack.flower_request(
        APPLY, method="POST", body=FORGED, **CROSS_SITE, **login
    )
    assert status == 403
    # The owner, with the login, can: and that is the only run of the task since the mark.
    status, _, body = dev_stack.flower_request(
        APPLY, method="POST", body=FORGED, **{"Content-Type": "application/json"}, **login
    )
    assert status == 200, body
    task_id = json.loads(body)["task-id"]
    dev_stack.wait_for(rf"{NOOP}\[{task_id}\] succeeded", after=mark)
    assert len(noop_received(dev_stack, mark)) == 1


def test_the_login_is_printed_at_start_and_kept_owner_only_beside_servers_env(
    dev_stack: DevStack,
) -> None:
    path = dev_stack.state / "flower-login"
    assert (dev_stack.state / "servers.env").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, _, password = path.read_text().strip().partition(":")
    assert len(password) >= 20
    dev_stack.wait_for(rf"Flower login: user {user}, password {re.escape(password)} \(kept in ")
    status, _, _ = dev_stack.flower_request("/api/workers")
    assert status == 401
    wait_for(
        lambda: (
            dev_stack.flower_request("/api/workers", Authorization=dev_stack.authorization())[0]
            == 200
        ),
        what="Flower's API to answer the login",
    )


def test_a_port_in_use_is_one_clear_line(dev_stack: DevStack, tmp_path: Path) -> None:
    result = subprocess.run(
        [BEATKEEPER, "dev", "-f", str(dev_stack.manifests), "--state-dir", str(tmp_path),
         "--flower-port", str(dev_stack.port)],
        env=dev_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"port {dev_stack.port} on 127.0.0.1 is in use" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_ctrl_c_stops_every_child_and_a_second_start_resumes(dev_stack: DevStack) -> None:
    login = (dev_stack.state / "flower-login").read_text()
    stop_and_check_nothing_is_left(dev_stack, signal.SIGINT)

    # A new port: right after a stop, `port_in_use` (a bind without SO_REUSEADDR) can still
    # see the old Flower port's TIME_WAIT connections as "in use".
    dev_stack.start(port=free_port())
    wait_for(dev_stack.succeeded, timeout=60, what=f"{TASK} to succeed after the restart")
    assert (dev_stack.state / "flower-login").read_text() == login  # the same login
    # The schedule was kept in the state folder: nothing to create again.
    assert not [line for line in dev_stack.lines if re.search(r"quick (created|deleted)", line)]
    # The first screen still lists it, with its next run.
    listed = r"default/quick\s+unchanged\s+every \S+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in "
    assert [line for line in dev_stack.lines if re.search(listed, line)], dev_stack.lines

    # `kill` (SIGTERM, as a service manager stops it) is a clean stop too, not an exit that
    # leaves Beat, the worker, Flower and the servers running on their own.
    stop_and_check_nothing_is_left(dev_stack, signal.SIGTERM)


def stop_and_check_nothing_is_left(stack: DevStack, number: int) -> None:
    assert stack.process is not None
    parent = psutil.Process(stack.process.pid)
    family = parent.children(recursive=True) + stack.servers()
    assert {p.pid for p in family} >= {c.pid for c in parent.children()}
    assert len(family) >= 5, family  # Beat, worker, Flower, PostgreSQL, Redis at least

    assert (stack.state / "servers.env").exists()
    assert stack.interrupt(number=number) == 0
    assert not (stack.state / "servers.env").exists()
    leftovers = [p for p in family if alive(p)]
    assert leftovers == [], leftovers
    assert any("stopping Beat, the worker and Flower" in line for line in stack.lines)


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
