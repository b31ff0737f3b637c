"""The separate Airflow 3.3.2 virtualenv scripts/airflow-venv builds, which the tests in tests/airflow/ and tests/kdc/
run the rendered settings with; and the tail of a program's output, for their failure messages."""

from testbed.harness import ROOT

AIRFLOW_VENV = ROOT / "scripts" / "airflow-venv"
BUILD_TIMEOUT = 30 * 60


def _tail(text, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])
