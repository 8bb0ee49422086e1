"""The docs that list configuration are generated from config/multidb/conf/databases.py and must not drift."""

import subprocess
import sys

from tests.support.project import ROOT


def test_env_example_and_readme_table_match_the_declared_variables():
    result = subprocess.run(
        [sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
