"""The README documents every option, generated from the declarations."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_option_tables_match_the_declarations():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "options_table.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```sh") + 1: readme.index("```sh") + 3]
    run_server, run_tests = (line.split("#")[0].strip() for line in block)
    assert run_server.endswith("netserver")
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == run_tests


def test_syslog_facility_names_match_the_standard_library():
    import logging.handlers

    from netserver.options import SYSLOG_FACILITIES

    assert SYSLOG_FACILITIES == logging.handlers.SysLogHandler.facility_names
