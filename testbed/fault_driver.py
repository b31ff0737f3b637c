"""`python -m testbed.fault_driver envs ARGS...`: `python -m envs ARGS...` exactly, except that the program marks
every Kubernetes object `pulumi.com/skipAwait` (testbed/apiserver.py: nothing becomes ready on the API server
fixture, which has no nodes). The deploy-fault tests run it as a separate process so that they can kill it.
"""

from __future__ import annotations

import sys

import engine
from envs import cli
from testbed.apiserver import instance_without_awaiting


class SkipAwaitEngine(cli.Engine):
    def __init__(self, work_dir):
        super().__init__(work_dir)
        self.workspace = engine.workspace(work_dir=work_dir, program=instance_without_awaiting)


def main(argv: list[str]) -> int:
    tool, *args = argv
    if tool != "envs":
        raise SystemExit(f"fault_driver: unknown tool {tool!r}")
    return cli.main(args, engine_factory=SkipAwaitEngine)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
