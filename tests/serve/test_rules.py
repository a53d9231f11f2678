"""The alert rules shipped with portbook: promtool checks them and proves each alert fires."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from portbook._serve.metrics import alert_rules
from tests.conftest import run_cli
from tests.serve.conftest import require

pytestmark = pytest.mark.prometheus
HERE = Path(__file__).parent


def test_metrics_rules_prints_the_shipped_file() -> None:
    result = run_cli("metrics", "--rules")
    assert result.status == 0 and result.stdout == alert_rules()
    assert "PortbookNewListenerOnAllInterfaces" in result.stdout


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    rules = tmp_path / "alerts.yml"
    rules.write_text(alert_rules())
    done = subprocess.run(
        [promtool, "check", "rules", "--lint-fatal", str(rules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout + done.stderr


def test_promtool_unit_tests_prove_each_alert_fires_and_clears(tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    (tmp_path / "alerts.yml").write_text(alert_rules())
    shutil.copy(HERE / "alerts_test.yml", tmp_path / "alerts_test.yml")
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_unit_tests_would_notice_a_wrong_expectation(tmp_path: Path) -> None:
    """The oracle is awake: an alert expected where none fires fails the unit test."""
    promtool = require("promtool", "prometheus")
    (tmp_path / "alerts.yml").write_text(alert_rules())
    text = (HERE / "alerts_test.yml").read_text()
    quiet = "  - eval_time: 15m\n        alertname: PortbookNewListenerOnAllInterfaces\n"
    wrong = text.replace(
        quiet + "        exp_alerts: []",
        quiet + "        exp_alerts: [{exp_labels: {severity: warning}}]",
        1,
    )
    assert wrong != text
    (tmp_path / "alerts_test.yml").write_text(wrong)
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "FAILED" in done.stdout + done.stderr
