"""Figures of the git layer, timed as a user waits: whole `nbs2i build`
processes, start-up included, alternating with an anchor nbs2i when one is given.

1. A `file://` clone: sample-notebooks without requirements.txt, one commit,
   built from its URL (shallow clone, the commit read, the notebook layer).
2. The same repository built as a local checkout (the commit read, no clone).
3. The same files as a plain directory (no checkout: nothing to read).
4. The clone alone, without the engine: a Python process that opens the
   `file://` source (clone, commit read, temp dir removed) and exits.

    .venv/bin/python benchmarks/clone.py [--builder IMAGE] [--runs 5]
        [--anchor "env PYTHONPATH=/other/src /other/.venv/bin/nbs2i"]
        [--anchor-python "env PYTHONPATH=/other/src /other/.venv/bin/python"]

`--anchor` is a command line that runs another nbs2i (another commit's
sources, say), `--anchor-python` its Python for case 4; each round runs every
case with this nbs2i, then with the anchor.
The builder defaults to nbs2i/builder:<version> (built first when absent).
Everything it builds is tagged nbs2i-bench/* and removed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import LABEL, NBS2I, RUN_ID, SAMPLES, alternate, image_id, median, run

OPEN_SOURCE = (
    "import sys\nfrom nbs2i.source import open_source\n"
    "with open_source(sys.argv[1]) as source:\n    pass\n"
)


def course(work: Path) -> tuple[Path, Path]:
    """A one-commit repository of the sample notebooks, and a plain copy of it."""
    repo = work / "repo"
    shutil.copytree(SAMPLES, repo)
    (repo / "requirements.txt").unlink()
    plain = work / "plain"
    shutil.copytree(repo, plain)
    env = {"GIT_AUTHOR_DATE": "2024-03-01T10:00:00Z", "GIT_COMMITTER_DATE": "2024-03-01T10:00:00Z"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "lectures"]):
        subprocess.run(
            ["git", "-c", "user.name=T", "-c", "user.email=t@x", *args],
            cwd=repo,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work), **env},
            check=True,
        )
    return repo, plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--anchor", default="", help="command line of another nbs2i")
    parser.add_argument("--anchor-python", default="", help="command line of its Python")
    opts = parser.parse_args()
    from nbs2i.building import default_builder

    builder = opts.builder or default_builder()
    if not image_id(builder):
        run([NBS2I, "builder", "build", "--tag", builder, "-q"])
    commands = {"nbs2i": ([NBS2I], [sys.executable])}
    if opts.anchor:
        commands["anchor"] = (shlex.split(opts.anchor), shlex.split(opts.anchor_python))
    work = Path(tempfile.mkdtemp(prefix="bench-clone-"))
    tags: list[str] = []
    try:
        repo, plain = course(work)
        sources = {"file:// clone": f"file://{repo}", "checkout": str(repo)}
        sources["plain dir"] = str(plain)
        contenders = {}
        for case, source in sources.items():
            for who, (command, _python) in commands.items():
                tag = f"nbs2i-bench/clone-{who}-{len(tags)}:{RUN_ID}"
                tags.append(tag)
                args = [*command, "build", source, tag, "--builder", builder, "-q", *LABEL]
                contenders[f"{case}, {who}"] = lambda _i, args=args: run(args)
        for who, (_command, python) in commands.items():
            if python:
                args = [*python, "-c", OPEN_SOURCE, f"file://{repo}"]
                contenders[f"clone alone, {who}"] = lambda _i, args=args: run(args)
        for build in contenders.values():
            build(-1)  # warm: the first build pays for the page cache, not for nbs2i
        times = alternate(opts.runs, contenders)
    finally:
        for tag in tags:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"builder {builder}; medians of {opts.runs} whole-process runs, alternating")
    for name, values in times.items():
        print(f"{name}: {median(values):.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
