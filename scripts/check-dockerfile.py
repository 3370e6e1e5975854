#!/usr/bin/env python3
"""Runs the Dockerfile's build steps without Docker (no engine on these machines), so the
Dockerfile cannot rot unnoticed:

- build stage: every RUN command runs in the repository (standing in for `COPY . .` into the
  WORKDIR), except apt-get lines, whose packages must already be installed (scripts/deps.sh);
- runtime stage: every COPY source must exist (build outputs after the build), and the
  ENTRYPOINT with CMD, run with `-t` against the copied config, must accept it.
"""
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instructions(text):
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def fail(msg):
    print(f"check-dockerfile: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        steps = instructions(f.read())
    stages, stage = [], None
    for word, arg in steps:
        if word == "FROM":
            stage = {"from": arg, "steps": []}
            stages.append(stage)
        elif stage is not None:
            stage["steps"].append((word, arg))
    if len(stages) != 2:
        fail(f"expected two stages (build, runtime), found {len(stages)}")
    build, runtime = stages
    workdir = None
    for word, arg in build["steps"]:
        if word == "WORKDIR":
            workdir = arg
        elif word == "RUN":
            for command in re.split(r"\s&&\s", arg):
                command = command.strip()
                if command.startswith("apt-get install"):
                    packages = [p for p in shlex.split(command)[2:] if not p.startswith("-")]
                    for p in packages:
                        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0:
                            fail(f"build stage installs `{p}`, which is not a Debian package here")
                    print(f"build stage packages installed: {' '.join(packages)}")
                elif command.startswith(("apt-get", "rm -rf /var/lib/apt")):
                    continue
                else:
                    print(f"build stage: {command}", flush=True)
                    if subprocess.run(command, shell=True, cwd=ROOT).returncode != 0:
                        fail(f"build step failed: {command}")
    if workdir is None:
        fail("build stage has no WORKDIR")
    config, binary = None, None
    entrypoint, cmd = None, None
    for word, arg in runtime["steps"]:
        if word == "COPY":
            parts = arg.split()
            from_build = parts[0].startswith("--from=")
            if from_build:
                parts = parts[1:]
            src, dst = parts[0], parts[-1]
            if from_build:
                if not src.startswith(workdir + "/"):
                    fail(f"COPY --from=build {src} is outside WORKDIR {workdir}")
                src = src[len(workdir) + 1:]
            if not os.path.exists(os.path.join(ROOT, src)):
                fail(f"COPY source {src} does not exist")
            if dst.endswith(".yaml"):
                config = (src, dst)
            if dst.startswith("/usr/local/bin/"):
                binary = (src, dst)
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(arg)
        elif word == "CMD":
            cmd = json.loads(arg)
    if not (entrypoint and cmd and config and binary):
        fail("runtime stage needs the binary and config COPYs, ENTRYPOINT and CMD")
    argv = [os.path.join(ROOT, binary[0]) if a == binary[1] else a for a in entrypoint]
    argv += [os.path.join(ROOT, config[0]) if a == config[1] else a for a in cmd]
    env = dict(os.environ, TETHER_SESSION_KEY="docker-check-not-a-secret-0123456789abcdef")
    print("runtime stage config check:", " ".join(argv + ["-t"]))
    if subprocess.run(argv + ["-t"], env=env).returncode != 0:
        fail("the image's ENTRYPOINT/CMD rejects its config")
    print("Dockerfile: build steps ran, runtime stage consistent")


if __name__ == "__main__":
    main()
