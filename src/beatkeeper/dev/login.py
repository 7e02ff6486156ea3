"""The dev Flower's login: generated once per state folder, kept owner-only beside
``servers.env``, and handed to Flower as its basic-auth credentials.

Listening on 127.0.0.1 does not protect an HTTP API from the browser on the same machine:
any web page can POST to ``http://127.0.0.1:5555/api/task/async-apply/<task>``, and with
Flower's unauthenticated API it ran the task. With basic auth configured, Flower 2 answers
401 without the credentials, drops its ``Access-Control-Allow-Origin: *`` and refuses
cross-site POSTs (``Sec-Fetch-Site``, or an ``Origin`` other than its ``Host``) with 403 even
from a browser that has logged in. Flower offers no allowed-hosts setting; a spoofed
``Host`` (DNS rebinding) is still a foreign origin to the browser, which holds no
credentials for it, so it gets 401 too.

The password is random, written once with mode 0600, printed when the stack starts and kept
for the next start; it reaches Flower through its environment (``FLOWER_BASIC_AUTH``), not
its command line, which other users of the machine can read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from beatkeeper.dev.servers import write_private

__all__ = ["LOGIN_FILE", "USER", "Login", "flower_login"]

LOGIN_FILE = "flower-login"
USER = "beatkeeper"


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    path: Path

    @property
    def basic_auth(self) -> str:
        """Flower's ``--basic-auth`` form: ``user:password``."""
        return f"{self.user}:{self.password}"


def flower_login(state: Path) -> Login:
    """The login kept in ``state``, or a new one stored there (owner-only) when it has none."""
    path = state / LOGIN_FILE
    try:
        user, _, password = path.read_text().strip().partition(":")
    except FileNotFoundError:
        user = password = ""
    # Flower splits FLOWER_BASIC_AUTH on commas: a hand-edited password with one is replaced.
    if not user or not password or "," in user + password:
        user, password = USER, secrets.token_urlsafe(18)
    write_private(path, f"{user}:{password}\n")  # also narrows a file widened by hand
    return Login(user, password, path)
