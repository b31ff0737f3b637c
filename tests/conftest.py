import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The program imports `components` from the project root, as the Pulumi language host runs it.
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    """The CloudNativePG and Barman Cloud plugin CRDs at our pinned versions, from scripts/fetch-crds."""
    result = subprocess.run([ROOT / "scripts" / "fetch-crds"], capture_output=True, text=True)
    if result.returncode != 0:
        reason = f"scripts/fetch-crds failed: {result.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(result.stdout.strip())
