"""CI runs the README's own commands: a changed README must change .ci/run with it."""

import re

from tests.conftest import REPO


def readme_command(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.+?)\n```", text)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_ci_installs_and_tests_with_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    install, main_job, *_ = readme_command("setup-command").split(" && ")
    assert install in ci
    assert any(line.startswith(main_job + " ") for line in ci)
    assert readme_command("test-command") in ci
