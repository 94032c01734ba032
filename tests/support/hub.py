"""A real JupyterHub for engine tests and benchmarks, and a student who uses it.

`running_hub()` starts JupyterHub (from `make hub-tools`: .tools/hub<major>)
as a subprocess with DockerSpawner and configurable-http-proxy. The proxy
listens on 127.0.0.1; the hub's API listens on the gateway of a Docker network
made for this hub, the one network the students' containers join. Every
student container is started the way a restricted platform starts it (a UID
from nbs2i.restricted with GID 0, read-only root, tmpfs /tmp, no capabilities,
no-new-privileges) with a labelled volume of its own on HOME, and is removed
when its server stops. Containers, volumes, the network, the hub's process
group and its directory are removed at the end, also after a failure.

`Student` is a browser in Python: the hub's login form (cookies, _xsrf), the
spawn button, the OAuth dance through the proxy, then JupyterLab through the
proxy as tests/support/lab.py uses it. Every wait is bounded in time and in
count. The test talks to 127.0.0.1 only; the hub and its proxy reach the
students' containers only on the hub's own network.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from nbs2i import restricted
from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError
from tests.support import docker_api
from tests.support.lab import CORS, HTTP_SECONDS, NAVIGATE, Lab, http_session
from tests.support.session import LABELS, SESSION_ID

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
# The majors `make hub-tools` installs: the builder's default and its other one.
HUB_MAJORS = ("6", "5")
PROXY = TOOLS / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_LABEL = "nbs2i.test.hub"
HUB_START_SECONDS = 60.0
SPAWN_SECONDS = 120.0
STOP_SECONDS = 60.0
POLL_SECONDS = 0.25
# What a hub logs when its major differs from the image's jupyterhub-singleuser.
VERSION_MISMATCH = re.compile(r"jupyterhub version \S+ != jupyterhub-singleuser version \S+")

# The hub's configuration: fixed code that reads the test's values from a JSON
# file beside it, so that nothing the test chooses is pasted into Python.
HUB_CONFIG = """\
import json
import pathlib

here = pathlib.Path(__file__).resolve().parent
s = json.loads((here / "settings.json").read_text())
c = get_config()  # noqa: F821

c.JupyterHub.bind_url = s["public_url"]
c.JupyterHub.hub_bind_url = s["hub_url"]
c.JupyterHub.hub_connect_url = s["hub_url"]
c.JupyterHub.db_url = "sqlite:///" + str(here / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(here / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(here / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [s["proxy"]]
c.ConfigurableHTTPProxy.api_url = s["proxy_api_url"]
c.ConfigurableHTTPProxy.auth_token = s["proxy_token"]
c.ConfigurableHTTPProxy.pid_file = str(here / "proxy.pid")

c.JupyterHub.authenticator_class = "jupyterhub.authenticators.shared.SharedPasswordAuthenticator"
c.SharedPasswordAuthenticator.user_password = s["password"]
c.Authenticator.allowed_users = set(s["students"])

c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = s["image"]
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = s["prefix"]
c.DockerSpawner.network_name = s["network"]
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.volumes = {s["prefix"] + "-{username}": s["home"]}
c.DockerSpawner.extra_host_config = s["host_config"]
c.Spawner.start_timeout = s["start_timeout"]
c.Spawner.http_timeout = s["start_timeout"]
if s["args"]:
    c.Spawner.args = s["args"]
if s["cmd"]:
    c.DockerSpawner.cmd = s["cmd"]
if s["notebook_dir"]:
    c.Spawner.notebook_dir = s["notebook_dir"]
if s["default_url"]:
    c.Spawner.default_url = s["default_url"]


def create_kwargs(spawner):
    # Read at every spawn: a test restarts a student under another UID.
    uids = json.loads((here / "uids.json").read_text())
    return {"user": f"{uids[spawner.user.name]}:0", "labels": s["labels"]}


def pre_spawn(spawner):
    # Read at every spawn: a test gives a student a newer image of the course.
    images = here / "images.json"
    if images.exists():
        spawner.image = json.loads(images.read_text()).get(spawner.user.name, s["image"])


c.DockerSpawner.extra_create_kwargs = create_kwargs
c.Spawner.pre_spawn_hook = pre_spawn
"""


class HubError(AssertionError):
    """The hub or a student's server did not do what the test needed."""


# -- the tools -------------------------------------------------------------------------


@dataclass(frozen=True)
class HubTools:
    major: str
    jupyterhub: Path
    proxy: Path
    version: str


def hub_tools(major: str) -> HubTools:
    """The JupyterHub of `major` that `make hub-tools` installed, or a HubError
    that says how to get it."""
    hub = TOOLS / f"hub{major}" / "bin" / "jupyterhub"
    missing = [str(p) for p in (hub, PROXY) if not p.exists()]
    if missing or shutil.which("node") is None:
        raise HubError(
            f"no JupyterHub {major} tools ({', '.join(missing) or 'node'}): run `make hub-tools`"
        )
    version = subprocess.run(
        [str(hub), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    return HubTools(major, hub, PROXY, version)


# -- the hub ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HubSettings:
    """One hub: the image every student gets, who may log in, and how the
    spawner starts the server (empty means JupyterHub's and the image's default)."""

    image: str
    students: tuple[str, ...]
    args: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    notebook_dir: str = ""
    default_url: str = ""
    start_timeout: int = int(SPAWN_SECONDS)
    volume_target: str = restricted.HOME  # where each student's volume is mounted


@dataclass
class Hub:
    tools: HubTools
    settings: HubSettings
    url: str  # the proxy: what a browser opens
    password: str
    workdir: Path
    network: docker_api.Network
    prefix: str
    engine: Docker
    uids: dict[str, int] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    pid: int = 0  # the hub's, and its process group's

    def container(self, student: str) -> str:
        return f"{self.prefix}-{student}"

    def volume(self, student: str) -> str:
        return f"{self.prefix}-{student}"

    def set_uid(self, student: str, uid: int) -> None:
        """The UID the student's next server runs as (with GID 0)."""
        self.uids[student] = restricted.check_uid(uid)
        partial = self.workdir / "uids.json.partial"
        partial.write_text(json.dumps(self.uids))
        partial.replace(self.workdir / "uids.json")

    def set_image(self, student: str, image: str) -> None:
        """The image the student's next server starts from."""
        self.images[student] = image
        partial = self.workdir / "images.json.partial"
        partial.write_text(json.dumps(self.images))
        partial.replace(self.workdir / "images.json")

    def log(self) -> str:
        return (self.workdir / "hub.log").read_text(errors="replace")

    def version_warnings(self) -> list[str]:
        return [line for line in self.log().splitlines() if VERSION_MISMATCH.search(line)]


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _settings_json(hub: Hub, hub_port: int, proxy_api_port: int) -> dict[str, Any]:
    s = hub.settings
    return {
        "public_url": hub.url,
        "hub_url": f"http://{hub.network.gateway}:{hub_port}",
        "proxy": str(hub.tools.proxy),
        "proxy_api_url": f"http://{restricted.LOOPBACK}:{proxy_api_port}",
        "proxy_token": uuid.uuid4().hex,
        "password": hub.password,
        "students": list(s.students),
        "image": s.image,
        "prefix": hub.prefix,
        "network": hub.network.name,
        "home": s.volume_target,
        "host_config": {
            "read_only": True,
            "tmpfs": {restricted.TMP: restricted.scratch().options()},
            "cap_drop": list(restricted.CAP_DROP),
            "security_opt": [restricted.NO_NEW_PRIVILEGES],
        },
        "labels": {**LABELS, HUB_LABEL: hub.prefix},
        "start_timeout": s.start_timeout,
        "args": list(s.args),
        "cmd": list(s.cmd),
        "notebook_dir": s.notebook_dir,
        "default_url": s.default_url,
    }


def _hub_environment(tools: HubTools) -> dict[str, str]:
    # No proxy variables: every request the hub and its proxy make stays on
    # this machine. node must be on PATH for the proxy's launcher.
    keep = ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{tools.jupyterhub.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _wait_hub(hub: Hub, process: subprocess.Popen[bytes]) -> None:
    """Until the proxy forwards to the hub's API, bounded."""
    started = time.monotonic()
    session = http_session()
    for _ in range(int(HUB_START_SECONDS / POLL_SECONDS) + 10):
        if process.poll() is not None:
            raise HubError(f"JupyterHub exited ({process.returncode}):\n{_tail(hub.log())}")
        with contextlib.suppress(requests.RequestException):
            if session.get(f"{hub.url}/hub/api", timeout=3).status_code == 200:
                return
        if time.monotonic() - started > HUB_START_SECONDS:
            break
        time.sleep(POLL_SECONDS)
    raise HubError(f"JupyterHub did not answer in {HUB_START_SECONDS:.0f}s:\n{_tail(hub.log())}")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hub (it stops the students' servers and its proxy), then
    whatever is left of its process group, which holds only what it started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _remove_engine_objects(
    engine: Docker, hub_prefix: str, volumes: list[str], network: str
) -> None:
    for container in engine.containers(labels=[f"{HUB_LABEL}={hub_prefix}"]):
        with contextlib.suppress(Nbs2iError):
            engine.remove_container(container.id)
    for name in volumes:
        with contextlib.suppress(Nbs2iError):
            engine.remove_volume(name)
    with contextlib.suppress(Nbs2iError):
        docker_api.remove_network(network)


@contextlib.contextmanager
def running_hub(engine: Docker, tools: HubTools, settings: HubSettings) -> Iterator[Hub]:
    """A JupyterHub serving `settings`; everything it and its students made is
    removed afterwards. On a failure inside, the hub's log is printed."""
    prefix = f"nbs2i-test-{SESSION_ID}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="nbs2i-hub-"))
    volumes: list[str] = []
    process: subprocess.Popen[bytes] | None = None
    network = docker_api.create_network(prefix, LABELS)
    try:
        if not network.gateway:
            raise HubError(f"the network {network.name} has no gateway address")
        for student in settings.students:
            volumes.append(engine.create_volume(f"{prefix}-{student}", LABELS))
        hub = Hub(
            tools=tools,
            settings=settings,
            url=f"http://{restricted.LOOPBACK}:{free_port(restricted.LOOPBACK)}",
            password=uuid.uuid4().hex,
            workdir=workdir,
            network=network,
            prefix=prefix,
            engine=engine,
        )
        for student in settings.students:
            hub.set_uid(student, restricted.random_uid())
        values = _settings_json(hub, free_port(network.gateway), free_port(restricted.LOOPBACK))
        (workdir / "settings.json").write_text(json.dumps(values, indent=1))
        (workdir / "jupyterhub_config.py").write_text(HUB_CONFIG)
        with (workdir / "hub.log").open("wb") as log:
            process = subprocess.Popen(
                [str(tools.jupyterhub), "-f", str(workdir / "jupyterhub_config.py")],
                cwd=workdir,
                env=_hub_environment(tools),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        hub.pid = process.pid
        _wait_hub(hub, process)
        try:
            yield hub
        except BaseException:
            print(
                f"--- JupyterHub {tools.version} log (tail) ---\n{_tail(hub.log(), 80)}",
                file=sys.stderr,
            )
            raise
    finally:
        if process is not None:
            _stop_process(process)
        _remove_engine_objects(engine, prefix, volumes, network.name)
        shutil.rmtree(workdir, ignore_errors=True)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# -- a student with a browser ------------------------------------------------------------

_FORM_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


class Student(Lab):
    """One student: logs in through the form, spawns, and works in JupyterLab
    through the proxy, with the cookies and XSRF headers a browser sends."""

    def __init__(self, hub: Hub, name: str) -> None:
        super().__init__(hub.url, f"/user/{name}")
        self.hub = hub
        self.name = name

    def log_in(self) -> None:
        page = self.http.get(f"{self.hub.url}/hub/login", timeout=HTTP_SECONDS, headers=NAVIGATE)
        match = _FORM_XSRF.search(page.text)
        if page.status_code != 200 or not match:
            raise HubError(f"{self.name}: no login form ({page.status_code})")
        answer = self.http.post(
            f"{self.hub.url}/hub/login?next=",
            data={
                "username": self.name,
                "password": self.hub.password,
                "_xsrf": html.unescape(match.group(1)),
            },
            headers=NAVIGATE,
            allow_redirects=False,
            timeout=HTTP_SECONDS,
        )
        if answer.status_code != 302:
            raise HubError(f"{self.name}: login answered {answer.status_code}, not a redirect")
        # The hub's XSRF token is bound to the new session: a page view renews it.
        self.http.get(f"{self.hub.url}/hub/home", headers=NAVIGATE, timeout=HTTP_SECONDS)

    def hub_api(self, method: str, path: str) -> requests.Response:
        return self.http.request(
            method,
            f"{self.hub.url}/hub/api{path}",
            headers={**CORS, "X-XSRFToken": self.xsrf("/hub/")},
            timeout=HTTP_SECONDS,
        )

    def server_state(self) -> dict[str, Any] | None:
        """The hub's view of the default server (None when there is none)."""
        answer = self.hub_api("GET", f"/users/{self.name}")
        if answer.status_code != 200:
            raise HubError(f"{self.name}: the hub API answered {answer.status_code}")
        return answer.json().get("servers", {}).get("")

    def request_spawn(self) -> float:
        """What "Start My Server" does; the monotonic time it was asked."""
        started = time.monotonic()
        answer = self.http.get(
            f"{self.hub.url}/hub/spawn/{self.name}",
            headers=NAVIGATE,
            allow_redirects=False,
            timeout=HTTP_SECONDS,
        )
        if answer.status_code not in (200, 302):
            raise HubError(f"{self.name}: spawn answered {answer.status_code}")
        return started

    def wait_ready(self, started: float, timeout: float = SPAWN_SECONDS) -> float:
        """Until the server answers through the proxy and the OAuth handshake
        is done; seconds since `started`. A spawn the hub gave up on fails at once."""
        seen = False
        for _ in range(int(timeout / POLL_SECONDS) + 10):
            if self._answers():
                self._oauth()
                return time.monotonic() - started
            running = self._container_running()
            if seen and not running:
                raise HubError(
                    f"{self.name}: the server's container stopped\n{_tail(self.hub.log())}"
                )
            seen = seen or running
            state = self.server_state()
            if state is not None and not state.get("pending") and not state.get("ready"):
                raise HubError(f"{self.name}: the spawn failed: {state}\n{_tail(self.hub.log())}")
            if state is None and time.monotonic() - started > 5:
                raise HubError(f"{self.name}: no server after the spawn\n{_tail(self.hub.log())}")
            if time.monotonic() - started > timeout:
                break
            time.sleep(POLL_SECONDS)
        raise HubError(f"{self.name}: not ready in {timeout:.0f}s\n{_tail(self.hub.log())}")

    def spawn(self, timeout: float = SPAWN_SECONDS) -> float:
        return self.wait_ready(self.request_spawn(), timeout)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop the server through the hub and wait until its container is gone."""
        answer = self.hub_api("DELETE", f"/users/{self.name}/server")
        if answer.status_code not in (202, 204):
            raise HubError(f"{self.name}: stop answered {answer.status_code}")
        started = time.monotonic()
        for _ in range(int(timeout / POLL_SECONDS) + 10):
            names = {c.name for c in self.hub.engine.containers()}
            if self.hub.container(self.name) not in names and self.server_state() is None:
                return
            if time.monotonic() - started > timeout:
                break
            time.sleep(POLL_SECONDS)
        raise HubError(f"{self.name}: the server did not stop in {timeout:.0f}s")

    def server_log(self) -> str:
        """The student's container output (before it stops: it is removed then)."""
        return self.hub.engine.logs(self.hub.container(self.name))

    def _container_running(self) -> bool:
        name = self.hub.container(self.name)
        return any(c.name == name and c.running for c in self.hub.engine.containers())

    def _answers(self) -> bool:
        # /api answers without credentials once the proxy routes to the server;
        # before that the hub answers the path with a redirect.
        with contextlib.suppress(requests.RequestException, ValueError):
            answer = self.http.get(self.url("/api"), allow_redirects=False, timeout=5)
            return answer.status_code == 200 and "version" in answer.json()
        return False

    def _oauth(self) -> None:
        page = self.http.get(self.url("/lab"), headers=NAVIGATE, timeout=HTTP_SECONDS)
        if page.status_code != 200 or not page.url.endswith(f"{self.prefix}/lab"):
            raise HubError(
                f"{self.name}: login to the server ended at {page.url} ({page.status_code})"
            )
