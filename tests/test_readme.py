"""README.md's set-up commands are what CI runs, so the docs cannot drift from .ci/run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = quick_start_commands()[:2]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    for step in install_and_test.split(" && "):
        assert step.strip() in ci_lines, f"{step!r} from README.md is not run by .ci/run"
    assert "janus " in install_and_run.split(" && ")[-1]
