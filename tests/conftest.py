import sys
from pathlib import Path

# The program imports `components` from the project root, as the Pulumi language host runs it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The session-scoped `kube_api` fixture: a real API server for the tests that need one.
pytest_plugins = ("tests.apiserver",)
