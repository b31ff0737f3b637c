"""Engine time against its floor, the program under the engine, team-stack previews, and `envs create`.

Two floors, each in the same scratch project and backend, previewed with the same policy pack and applied the
same way. The empty program is the least any Pulumi program costs: the CLI, the language runtime and the policy
pack, but no resource plugin. The plugin floor registers one resource of each provider a full instance uses (a
rendered ConfigMap, a RandomPassword, a LogBucket on the local endpoint), so it also starts the kubernetes and
random plugins and the dynamic-provider host: what engine and plugin start-up cost anyway.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import yaml

from bench.common import (ACCESS_KEY, PASSPHRASE, ROOT, SECRET_KEY, Scratch, configure, local_config, median,
                          run_probe, say, team_config, timed)


def _empty() -> None:
    """The empty floor: a program that registers nothing."""


def _one_per_provider(scratch: Scratch) -> Callable[[], None]:
    def program() -> None:
        import pulumi
        import pulumi_kubernetes as k8s
        import pulumi_random as random

        from components.log_bucket import LogBucket, LogBucketArgs

        kubernetes = k8s.Provider("kubernetes", render_yaml_to_directory=str(scratch.rendered("plugin-floor")))
        k8s.core.v1.ConfigMap("floor", metadata=k8s.meta.v1.ObjectMetaArgs(name="floor", namespace="floor"),
                              data={"floor": "yes"}, opts=pulumi.ResourceOptions(provider=kubernetes))
        random.RandomPassword("floor", length=16)
        LogBucket("floor", LogBucketArgs(bucket_name="plugin-floor-bench-logs", endpoint_url=scratch.endpoint,
                                         access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, force_destroy=True))

    return program


FLOORS = ("empty", "plugins")


def floor(scratch: Scratch, repeat: int) -> dict[str, Any]:
    import engine

    backend = scratch.backend()
    full = engine.open_stack("local", backend, work_dir=scratch.directory)
    configure(full, *local_config(scratch, "local"))
    floors = {"empty": engine.open_stack("floor", backend, work_dir=scratch.directory, program=_empty),
              "plugins": engine.open_stack("br-plugin-floor", backend, work_dir=scratch.directory,
                                           program=_one_per_provider(scratch))}
    say("first up of the local stack and of both floors (not timed)")
    for stack in (full, *floors.values()):
        stack.up(color="never")

    stacks = {"full": full, **floors}
    runs: dict[str, list[float]] = {f"{op}_{name}": [] for op in ("preview", "up") for name in stacks}
    for index in range(repeat):
        # Rotate which goes first, so none always meets another's leftovers.
        order = list(stacks)[index % 3:] + list(stacks)[:index % 3]
        for op in ("preview", "up"):
            for name in order:
                stack = stacks[name]
                run = (lambda: engine.preview(stack, expect_no_changes=True)) if op == "preview" else \
                    (lambda: stack.up(color="never", expect_no_changes=True))
                runs[f"{op}_{name}"].append(timed(run)[0])
        say(f"floor run {index + 1}/{repeat}: " + ", ".join(
            f"{op} {runs[f'{op}_full'][-1]:.2f}s vs {runs[f'{op}_empty'][-1]:.2f}s / {runs[f'{op}_plugins'][-1]:.2f}s"
            for op in ("preview", "up")))
    result: dict[str, Any] = {"runs": runs, "repeat": repeat}
    for op in ("preview", "up"):
        result[op] = {"median_s": median(runs[f"{op}_full"])}
        for name in FLOORS:
            ratios = [a / b for a, b in zip(runs[f"{op}_full"], runs[f"{op}_{name}"])]
            result[op][name] = {"floor_median_s": median(runs[f"{op}_{name}"]), "ratio_median": median(ratios),
                                "ratios": ratios}
    result["objects"] = rendered_objects(scratch, "local")
    return result


def rendered_objects(scratch: Scratch, stack: str) -> list[dict]:
    return [doc for path in sorted(scratch.rendered(stack).rglob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def program_under_engine(scratch: Scratch, repeat: int) -> dict[str, Any]:
    """Each preview in a fresh process: peak memory is per process, and the engine pays a cold program."""
    env = scratch.env()
    full, empty = [], []
    for _ in range(repeat):
        full.append(run_probe(["engine", "--program", "full", "--stack", "local", "--work-dir", str(scratch.directory)], env))
        empty.append(run_probe(["engine", "--program", "empty", "--stack", "floor", "--work-dir", str(scratch.directory)], env))
    return {
        "program_s": median([r["program_s"] for r in full]),
        "floor_program_s": median([r["program_s"] for r in empty]),
        "peak_rss_mib": median([r["peak_rss_mib"] for r in full]),
        "floor_peak_rss_mib": median([r["peak_rss_mib"] for r in empty]),
        "preview_s": median([r["preview_s"] for r in full]),
        "floor_preview_s": median([r["preview_s"] for r in empty]),
        "runs": len(full),
    }


def program_under_mocks(repeat: int, profile_path) -> dict[str, Any]:
    full = run_probe(["mocks", "--program", "full", "--repeat", str(repeat + 1)])
    empty = run_probe(["mocks", "--program", "empty", "--repeat", str(repeat + 1)])
    run_probe(["mocks", "--program", "full", "--profile", str(profile_path)])
    return {
        "cold_s": full["times_s"][0], "warm_s": median(full["times_s"][1:]),
        "floor_warm_s": median(empty["times_s"][1:]),
        "import_s": full["ours_import_s"], "pulumi_import_s": full["pulumi_import_s"],
        "peak_rss_mib": full["peak_rss_mib"], "floor_peak_rss_mib": empty["peak_rss_mib"],
        "resources": full["resources"], "runs": repeat,
    }


def team_previews(scratch: Scratch, counts: list[int], workers: int) -> dict[str, Any]:
    """Previews of N team stacks (never applied: every object a create, as in a first merge request), one after
    another in one process as scripts/ci-preview runs them, and N at once in separate processes, at most
    `workers` at a time (each preview runs its own CLI and plugins; the machine has 2 cores)."""
    import engine

    names = [f"team-{index:02d}" for index in range(max(counts))]
    for name in names:
        configure(engine.open_stack(name, scratch.backend(), work_dir=scratch.directory), *team_config(scratch, name))
    env = scratch.env()
    result: dict[str, Any] = {"workers": workers, "serial_s": {}, "parallel_s": {}}
    for count in counts:
        chosen = names[:count]
        serial, _ = timed(lambda: run_probe(["preview", "--stacks", ",".join(chosen), "--work-dir", str(scratch.directory)], env))
        with ThreadPoolExecutor(max_workers=min(workers, count)) as pool:
            parallel, _ = timed(lambda: list(pool.map(
                lambda name: run_probe(["preview", "--stacks", name, "--work-dir", str(scratch.directory)], env), chosen)))
        result["serial_s"][count], result["parallel_s"][count] = serial, parallel
        say(f"{count} team stack(s): {serial:.1f}s one after another, {parallel:.1f}s with {min(workers, count)} at once")
    return result


def envs_create(scratch: Scratch, repeat: int) -> dict[str, Any]:
    """`python -m envs create` of a new branch to rendered manifests, as a developer runs it (a fresh process),
    then its destroy."""
    env = {**scratch.env(), "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID": ACCESS_KEY,
           "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY": SECRET_KEY}
    creates, destroys, objects = [], [], []
    for index in range(repeat):
        branch = f"feature/bench-{index}-{int(time.time())}"
        render = scratch.directory / "rendered" / f"branch-{index}"
        command = [sys.executable, "-m", "envs", "--work-dir", str(scratch.directory)]
        created, done = timed(lambda: subprocess.run(
            [*command, "create", branch, "--parent-stack", "", "--dags-repo", "https://git.example.org/dags.git",
             "--config", f"s3.endpointUrl={scratch.endpoint}", "--config", f"kubernetesRenderDir={render}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900))
        if done.returncode != 0:
            raise RuntimeError(f"envs create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        objects.append(sum(1 for p in render.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d))
        destroyed, done = timed(lambda: subprocess.run([*command, "destroy", branch], cwd=ROOT, env=env,
                                                       capture_output=True, text=True, timeout=900))
        if done.returncode != 0:
            raise RuntimeError(f"envs destroy failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        creates.append(created)
        destroys.append(destroyed)
        say(f"envs create {created:.1f}s ({objects[-1]} objects), destroy {destroyed:.1f}s")
    return {"create_s": median(creates), "destroy_s": median(destroys), "creates": creates, "destroys": destroys,
            "objects": objects[-1] if objects else None, "runs": repeat}


def envs_applied(scratch: Scratch, repeat: int) -> dict[str, Any]:
    """`envs create` of a new branch to objects applied on a real API server (testbed/apiserver.py's fixture, with
    its controller manager), then `envs destroy` until the namespace is gone. It runs envs' own create and
    destroy in this process, through a workspace whose program marks every object skipAwait: with no nodes and
    no operators nothing becomes ready, so what is timed is applying, not waiting for pods."""
    from unittest import mock

    import engine
    from envs import cli
    from testbed.apiserver import binaries, crd_documents, instance_without_awaiting, running_api_server

    creates, destroys, objects = [], [], []
    with running_api_server(binaries(), crd_documents()) as api:
        kubeconfig = api.kubeconfig(scratch.directory / "kubeconfig")
        backend = engine.Backend(url=scratch.backend_url, passphrase=PASSPHRASE, extra_env={"KUBECONFIG": str(kubeconfig)})
        envs_engine = cli.Engine(scratch.directory)
        envs_engine.workspace = engine.workspace(backend, work_dir=scratch.directory, program=instance_without_awaiting)
        keys = {"AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID": ACCESS_KEY, "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY": SECRET_KEY}
        for index in range(repeat):
            branch = f"feature/applied-{index}-{int(time.time())}"
            with mock.patch.dict("os.environ", keys):
                created, code = timed(lambda: cli.create(
                    envs_engine, branch, dags_repo="https://git.example.org/dags.git", parent_stack=None,
                    # Pods (none run here) must be told an S3 endpoint off loopback on a deployed stack.
                    overrides={"s3.endpointUrl": scratch.endpoint, "s3.podEndpointUrl": "http://s3.bench.test:9000"},
                    out=lambda *_: None))
            if code != 0:
                raise RuntimeError(f"envs create {branch} failed ({code})")
            namespace = f"airflow-{cli.branch_instance_name(branch)}"
            objects.append(_objects_in(api, namespace))
            destroyed, code = timed(lambda: (cli.destroy(envs_engine, branch, out=lambda *_: None),
                                             _wait_gone(api, namespace))[0])
            if code != 0:
                raise RuntimeError(f"envs destroy {branch} failed ({code})")
            creates.append(created)
            destroys.append(destroyed)
            say(f"envs create to applied objects {created:.1f}s ({objects[-1]} objects), destroy until the namespace is "
                f"gone {destroyed:.1f}s")
    return {"create_s": median(creates), "destroy_s": median(destroys), "creates": creates, "destroys": destroys,
            "objects": objects[-1] if objects else None, "runs": repeat}


def _objects_in(api, namespace: str) -> int:
    """Objects of every namespaced kind the server lists, in `namespace`, plus the namespace itself."""
    count = 1
    for group in ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}"
                                for g in api.request("GET", "/apis").body["groups"]]:
        for resource in api.request("GET", group).body.get("resources", []):
            if resource["namespaced"] and "/" not in resource["name"] and "list" in resource.get("verbs", []):
                if resource["name"] == "events":  # the server's, not ours
                    continue
                count += len(api.request("GET", f"{group}/namespaces/{namespace}/{resource['name']}").body.get("items", []))
    return count


def _wait_gone(api, namespace: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while api.request("GET", f"/api/v1/namespaces/{namespace}").status != 404:
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {namespace} still there {timeout:.0f}s after envs destroy")
        time.sleep(0.5)
