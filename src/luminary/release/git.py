"""A release as a local git repository, shaped like the Hub's revisions (``luminary release --git``).

``main`` holds the whole release as written (the final model at the root,
``checkpoints/``, ``chunks/``, the index, the card, the manifest). Each
checkpoint is also a branch of its own, named as its folder
(``step000480-tokens1.97M``), whose tree is that checkpoint's files at the
root: what ``from_pretrained(repo, revision="step000480-tokens1.97M")`` reads
on the Hub, and what ``git clone --branch step000480-tokens1.97M`` gives here.
The branches are built with git's plumbing (``hash-object``, ``mktree``,
``commit-tree``, ``update-ref``) from the files already written, so no working
tree is switched and a weight file shared by ``main`` and a branch is one blob.
Commits carry a fixed author and the date of the run's last log line, so the
same release gives the same commit ids.

Plain git, no LFS: the object store holds a compressed copy of every weight
file, about the release's size again. ``.git`` is outside the manifest;
``luminary verify`` checks that each branch's files are the checkpoint's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from luminary.core.errors import LuminaryError

AUTHOR = ("luminary", "luminary@localhost")


def _git(folder: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], input=stdin, capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, check=False)
    except FileNotFoundError:
        raise LuminaryError("--git: git is not installed (apt install git)") from None
    if proc.returncode != 0:
        first = (proc.stderr or proc.stdout).strip().splitlines()[:1] or ["no output"]
        raise LuminaryError(f"--git: git {args[0]} failed in {folder}: {first[0]}")
    return proc.stdout.strip()


def _identity(date: str) -> dict[str, str]:
    name, email = AUTHOR
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date,
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _tree(folder: Path, root: Path, env: dict[str, str]) -> str:
    """The git tree of ``folder``'s files (recursively), their blobs written into ``root``'s repository."""
    lines = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            lines.append(f"040000 tree {_tree(path, root, env)}\t{path.name}")
        elif path.is_file():
            blob = _git(root, "hash-object", "-w", "--", str(path), env=env)
            lines.append(f"100644 blob {blob}\t{path.name}")
    return _git(root, "mktree", stdin="\n".join(lines) + ("\n" if lines else ""), env=env)


def write_git(release: Path, entries: list[dict[str, Any]], date: str) -> dict[str, str]:
    """Make ``release`` a git repository: ``main`` and one branch per checkpoint; branch -> commit."""
    if shutil.which("git") is None:
        raise LuminaryError("--git: git is not installed (apt install git)")
    env = _identity(date)
    _git(release, "init", "-q", "--initial-branch=main", env=env)
    # main: every file of the release except .git itself
    lines = []
    for path in sorted(release.iterdir()):
        if path.name == ".git":
            continue
        if path.is_dir():
            lines.append(f"040000 tree {_tree(path, release, env)}\t{path.name}")
        else:
            lines.append(f"100644 blob {_git(release, 'hash-object', '-w', '--', str(path), env=env)}\t{path.name}")
    tree = _git(release, "mktree", stdin="\n".join(lines) + "\n", env=env)
    main = _git(release, "commit-tree", tree, "-m", f"release: {len(entries)} checkpoints", env=env)
    _git(release, "update-ref", "refs/heads/main", main, env=env)
    branches = {"main": main}
    for entry in entries:
        name = Path(entry["checkpoint"]).name
        tree = _tree(release / entry["checkpoint"], release, env)
        commit = _git(release, "commit-tree", tree, "-p", main, "-m",
                      f"{name}: step {entry['step']}, loss {entry['loss']:.4f}", env=env)
        _git(release, "update-ref", f"refs/heads/{name}", commit, env=env)
        branches[name] = commit
    _git(release, "symbolic-ref", "HEAD", "refs/heads/main", env=env)
    _git(release, "read-tree", "main", env=env)  # the index matches main: `git status` shows it clean
    return branches


def check_git(release: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Problems: a checkpoint without its branch, or a branch whose files are not the checkpoint's."""
    if not (release / ".git").is_dir():
        return []
    problems = []
    env = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for entry in entries:
        name = Path(entry["checkpoint"]).name
        try:
            listed = _git(release, "ls-tree", "-r", f"refs/heads/{name}", env=env)
        except LuminaryError:
            problems.append(f".git: no branch {name} for {entry['checkpoint']}")
            continue
        in_branch = {}
        for line in listed.splitlines():
            meta, path = line.split("\t", 1)
            in_branch[path] = meta.split()[2]
        folder = release / entry["checkpoint"]
        on_disk = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        if set(in_branch) != set(on_disk):
            problems.append(f".git: branch {name} holds {sorted(set(in_branch) ^ set(on_disk))[:3]} "
                            f"unlike {entry['checkpoint']}")
            continue
        for rel, path in on_disk.items():
            if _git(release, "hash-object", "--", str(path), env=env) != in_branch[rel]:
                problems.append(f".git: branch {name}: {rel} differs from {entry['checkpoint']}/{rel}")
    return problems
