"""Run the CI recipes of examples/ci/ as their runners would: each job's own
commands, read from the YAML (never copied here), in a fresh container of a
runner image made for the test (Debian, Python, git, buildah, nbs2i's
dependencies; nbs2i itself is what the job installs, as a wheel of this tree).

The containers use the host's network, so the registry on 127.0.0.1 is
reachable from them and from the engine alike. What a CI service provides
around the commands, the harness provides: the checkout (the course, mounted),
Python (in the image), `docker/login-action` (a Docker config written from
the step's own `with:` values), GitLab's predefined variables. A GitHub job
gets the engine's socket and the docker CLI; a GitLab job gets no engine and,
for buildah, a container allowed to make mounts (CAP_SYS_ADMIN, no seccomp
filter), less than GitLab's privileged executors give.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nbs2i.ca import default_ca_bundle
from nbs2i.engine import Docker
from tests.support.images import build_dockerfile
from tests.support.session import LABELS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
JOB_SECONDS = 1200
WORKSPACE = "/workspace"
WHEELS = "/wheels"
HOST_CA = "/run/host-ca.crt"
_EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")

RUNNER_DOCKERFILE = """\
FROM debian:bookworm-slim
COPY ca.crt /run/build-ca.crt
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
      --no-install-recommends python3 python3-venv git ca-certificates buildah \\
    && rm -rf /var/lib/apt/lists/*
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/ci && /opt/ci/bin/pip install -q --cert /run/build-ca.crt \\
      /tmp/wheels/*.whl && /opt/ci/bin/pip uninstall -q -y nbs2i && rm -rf /tmp/wheels
ENV PATH=/opt/ci/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""


@dataclass(frozen=True)
class Runner:
    image: str  # the runner image, with nbs2i's dependencies
    wheels: Path  # the directory holding nbs2i's wheel
    wheel: str  # its name


def build_wheel(into: Path) -> str:
    """A wheel of this tree; its file name."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), str(root)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(into.glob("nbs2i-*.whl")).name


def build_runner(engine: Docker, tag: str, workdir: Path) -> Runner:
    wheels = workdir / "wheels"
    wheel = build_wheel(wheels)
    ca = default_ca_bundle()
    files = {"ca.crt": ca.read_bytes() if ca else b""}
    files[f"wheels/{wheel}"] = (wheels / wheel).read_bytes()
    build_dockerfile(engine, tag, RUNNER_DOCKERFILE, files)
    return Runner(tag, wheels, wheel)


def load(name: str, host: str = "") -> dict[str, Any]:
    """A recipe's YAML; `host` stands in for the registry it names (ghcr.io)."""
    text = (EXAMPLES / name).read_text()
    return dict(yaml.safe_load(text.replace("ghcr.io", host) if host else text))


# -- GitHub Actions ------------------------------------------------------------------


def github_expression(text: str, context: Mapping[str, str]) -> str:
    """`${{ name }}` replaced by the harness's value; an unknown one fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in context, f"the harness has no value for ${{{{ {name} }}}}"
        return context[name]

    return _EXPRESSION.sub(value, text)


def github_job(
    workflow: dict[str, Any], job: str, context: Mapping[str, str], env: Mapping[str, str]
) -> str:
    """The job as one shell script: the workflow's env (then the runner's `env`),
    the `run:` steps in order, and the harness's stand-in for each `uses:` step."""
    lines = ["set -eu"]
    for key, value in workflow["env"].items():
        lines.append(f"export {key}={shlex.quote(github_expression(str(value), context))}")
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    for step in workflow["jobs"][job]["steps"]:
        if "run" in step:
            lines.append(github_expression(step["run"], context))
        elif step["uses"].startswith("docker/login-action"):
            given = {k: github_expression(str(v), context) for k, v in step["with"].items()}
            lines.append(_login(given["registry"], given["username"], given["password"]))
        else:
            assert step["uses"].split("@")[0] in ("actions/checkout", "actions/setup-python")
    return "\n".join(lines)


# -- GitLab CI -----------------------------------------------------------------------


def gitlab_job(
    pipeline: dict[str, Any], job: str, predefined: Mapping[str, str], env: Mapping[str, str]
) -> str:
    """The job as one shell script: predefined variables, the pipeline's
    variables (in order, as GitLab expands them), the runner's `env`,
    before_script, script."""
    lines = ["set -eu"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in predefined.items()]
    lines += [f'export {key}="{value}"' for key, value in pipeline["variables"].items()]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    spec = pipeline[job]
    before = spec.get("before_script", pipeline.get("default", {}).get("before_script", []))
    lines += [*before, *spec["script"]]
    return "\n".join(lines)


def _login(registry: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = json.dumps({"auths": {registry: {"auth": auth}}})
    return (
        f'mkdir -p "$HOME/.docker" && printf %s {shlex.quote(config)} > "$HOME/.docker/config.json"'
    )


# -- running a job -------------------------------------------------------------------


def run_job(
    runner: Runner,
    script: str,
    workspace: Path,
    *,
    engine: bool,
    builds_images: bool = False,
    mounts: Sequence[tuple[str, str]] = (),
) -> subprocess.CompletedProcess[str]:
    """One job in a fresh container of the runner image (removed afterwards)."""
    docker = shutil.which("docker")
    assert docker, "the docker CLI runs the recipe containers"
    args = [docker, "run", "--rm", "--network", "host", "-w", WORKSPACE, "-e", "HOME=/root"]
    for key, value in LABELS.items():
        args += ["--label", f"{key}={value}"]
    volumes = [(str(workspace), WORKSPACE), (str(runner.wheels), WHEELS), *mounts]
    ca = default_ca_bundle()
    if ca is not None:
        volumes.append((str(ca), HOST_CA))
        args += ["-e", f"PIP_CERT={HOST_CA}"]
    if engine:
        volumes += [
            ("/var/run/docker.sock", "/var/run/docker.sock"),
            (docker, "/usr/local/bin/docker"),
        ]
    for source, target in volumes:
        writable = "" if target in (WORKSPACE, "/var/lib/containers") else ",readonly"
        args += ["--mount", f"type=bind,source={source},target={target}{writable}"]
    if builds_images:
        # What buildah needs to make mounts (a privileged executor gives more).
        args += ["--cap-add", "SYS_ADMIN"]
        args += ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
    args += [runner.image, "bash", "-c", script]
    return subprocess.run(args, capture_output=True, text=True, timeout=JOB_SECONDS)
