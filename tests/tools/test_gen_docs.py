"""scripts/gen-docs: every generated file is current, and --check finds one that is not (in a copy of the files,
so the repository is never written)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from testbed.harness import ROOT

spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts/gen_docs.py")
gen_docs = importlib.util.module_from_spec(spec)
sys.modules["gen_docs"] = gen_docs
spec.loader.exec_module(gen_docs)


def copy_of_the_sources(target):
    """The generated files and the committed stack files the capacity table reads, outside any git checkout."""
    committed = subprocess.run(["git", "ls-files", "Pulumi.*.yaml"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.split()
    for name in [*gen_docs.generated(ROOT), *committed]:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, target / name)
    return target


def test_every_generated_file_is_current():
    assert gen_docs.stale(ROOT) == [], "run: scripts/gen-docs"


def test_check_names_a_stale_table_and_a_stale_project_file(tmp_path):
    copy = copy_of_the_sources(tmp_path)
    assert gen_docs.stale(copy) == []
    page = copy / "docs" / "settings.md"
    page.write_text(page.read_text().replace("| `instance` |", "| `instanceName` |"))
    (copy / "Pulumi.yaml").write_text((copy / "Pulumi.yaml").read_text().replace("default: 3.3.2", "default: 3.3.1"))
    assert gen_docs.stale(copy) == ["Pulumi.yaml", "docs/settings.md"]
