"""What a run records of where it trained (runner.core.environment): the git commit is read from
`.git` itself and checked here against `git rev-parse` on real repositories (a plain one, packed refs,
a worktree, a detached HEAD); outside a repository there is none, and that is no error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runner.core.environment import environment, git_commit

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin:/usr/local/bin",
                               "HOME": str(folder)}).stdout.strip()


@needs_git
def test_the_commit_is_read_from_dot_git_as_git_reports_it(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "specs" / "x.toml").write_text("name = 'x'\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    # never by running git, while the files can be read
    monkeypatch.setattr("runner.core.environment._git_rev_parse", lambda folder: pytest.fail("ran git"))
    assert git_commit(repo / "specs") == git(repo, "rev-parse", "HEAD")

    git(repo, "pack-refs", "--all")  # the branch's ref only in packed-refs
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_commit(repo / "specs") == git(repo, "rev-parse", "HEAD")

    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "other")  # .git is a file there
    (tmp_path / "wt" / "y.txt").write_text("y")
    git(tmp_path / "wt", "add", ".")
    git(tmp_path / "wt", "commit", "-qm", "two")
    assert git_commit(tmp_path / "wt") == git(tmp_path / "wt", "rev-parse", "HEAD") != git_commit(repo)

    git(repo, "checkout", "-q", "--detach")
    assert git_commit(repo) == git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_there_is_no_commit_and_the_rest_is_recorded(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text("")
    env = environment(spec, tmp_path)
    assert "git_commit" not in env and git_commit(tmp_path) is None
    assert {"runner", "python", "torch", "transformers", "duckdb", "host", "device"} <= set(env)
    assert env["spec"] == str(spec.resolve()) and env["plugins"] == str(tmp_path.resolve())
    assert env["device"].startswith(("cpu: ", "cuda: ", "mps"))
