"""`make demo`: the whole protocol on a local chain, with real processes and real training.

1. anvil (`tessera devnet up`), every contract deployed, accounts funded from the dev-token faucet;
2. a staked worker, a verifier and an arbiter started as separate `tessera … run` processes;
3. `examples/submit_training.py` (digits MLP, waited for, finalized, registered) and
   `examples/finetune.py` (the child model), so the lineage has two levels;
4. a tiny random Llama-style checkpoint (Hugging Face layout, written offline by our exporter) imported
   with `tessera model import`, its base registered as Declared, and a LoRA fine-tune of it posted to
   the same worker; the adapter is registered JobVerified with relation `adapter` to the base, and
   `tessera model show` prints the lineage base -> adapter with both statuses (demo/lora_phase.py);
5. a second worker that tampers with one segment, and — the escape of the first protocol version — its
   puppet challenges a correct segment right after the commit to block honest challengers: in v2 the
   verifier still files its own challenge, the arbiter rules both, the cheater's collateral is slashed
   and the puppet's bond goes to the treasury;
6. a summary table (jobs, gas per call, stake before/after, wall time per phase), also written to
   demo-summary.json. Every process started here is stopped on success, failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Overridable so the e2e test can run the demo without touching a developer's own files.
WORK = Path(os.environ.get("TESSERA_DEMO_WORKDIR", ROOT / ".demo")).resolve()
SUMMARY_PATH = Path(os.environ.get("TESSERA_DEMO_SUMMARY", ROOT / "demo-summary.json")).resolve()
TOKEN = 10**18
# Persona indices of the local test mnemonic (docs/architecture.md).
DEPLOYER, SUBMITTER, WORKER, VERIFIER, ARBITER, TREASURY, CHEATER, PUPPET = 0, 1, 2, 3, 4, 5, 6, 7
STAKE_TOKENS = 200
PHASE_TIMEOUT_S = 240


class DemoError(RuntimeError):
    """A phase of the demo did not reach its expected end."""


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def tessera(*args: str, capture: bool = False, timeout: float = 120) -> str:
    """Run the `tessera` CLI as a user would; raise DemoError with its output on failure."""
    cmd = [sys.executable, "-m", "protocol.cli.main", *args]
    result = subprocess.run(cmd, cwd=ROOT, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise DemoError(f"`tessera {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    if result.stderr.strip() and not capture:
        print(result.stderr.strip(), file=sys.stderr)
    return result.stdout or ""


class Phases:
    """Wall time per phase, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        say(f"--- {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 2)


def write_daemon_config(path: Path, rpc_url: str, deployment: Path, account: str, data_dir: Path,
                        store: Path, section: str, section_values: dict[str, Any]) -> Path:
    """A daemon's TOML config: short poll intervals suit a local chain with one-second blocks."""
    common = {
        "network": rpc_url, "account": account, "deployment": str(deployment), "data_dir": str(data_dir),
        "store": str(store), "confirmations": 1, "poll_interval": 0.5, "reconcile_interval": 5.0,
        "rpc_timeout": 5.0, "log_format": "json", "log_level": "INFO",
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in common.items()]
    lines += ["", f"[{section}]"] + [f"{key} = {json.dumps(value)}" for key, value in section_values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_daemon(stack: ExitStack, name: str, daemon: str, config: Path, *, persona: str | None = None) -> Any:
    from worker.testing import DaemonProcess

    if persona is None:
        process = DaemonProcess(daemon, config, WORK / f"{name}.log")
    else:  # a dishonest worker: the real daemon with one hook changed (personas/, never production code)
        process = DaemonProcess(daemon, config, WORK / f"{name}.log", module="personas",
                                extra_args=["--behaviour", persona])
    stack.enter_context(process)
    say(f"started {name} ({daemon}, pid {process.process.pid}); log {process.log_path}")
    return process


def run_example(script: str, *args: str) -> str:
    """Run an example script with live output; return its stdout for parsing."""
    cmd = [sys.executable, str(ROOT / "examples" / script), *args]
    process = subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(f"    {line}", end="", flush=True)
        lines.append(line)
    if process.wait(timeout=PHASE_TIMEOUT_S) != 0:
        raise DemoError(f"examples/{script} exited with {process.returncode}")
    return "".join(lines)


def job_id_from(output: str) -> int:
    match = re.search(r"job (\d+) finalized", output)
    if not match:
        raise DemoError("the example did not report its job")
    return int(match.group(1))


def model_hash_from(output: str) -> str:
    match = re.search(r"model (0x[0-9a-f]{64}) is (\w+)", output)
    if not match:
        raise DemoError("the example did not report a registered model")
    return match.group(1)


def wait_for_state(client: Any, job_id: int, wanted: set[str], timeout: float = PHASE_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        state = client.job_state(job_id).name
        if state != last:
            say(f"job {job_id}: {state}")
            last = state
        if state in wanted:
            return state
        time.sleep(0.5)
    raise DemoError(f"job {job_id} did not reach {sorted(wanted)} within {timeout:.0f}s (last: {last})")


def gas_by_call(client: Any, job_ids: list[int]) -> dict[str, list[int]]:
    """gasUsed of every transaction that moved these jobs, grouped by the event it emitted."""
    call_of = {"JobPosted": "post", "JobClaimed": "claim", "JobCommitted": "commit", "JobFinalized": "finalize",
               "ChallengeFiled": "file challenge", "ChallengeRevealed": "reveal challenge", "Verdict": "verdict",
               "ModelRegistered": "register"}
    gas: dict[str, list[int]] = {}
    seen: set[str] = set()
    for job_id in job_ids:
        for event in client.job_events(job_id):
            call = call_of.get(event.name)
            if call is None or event.tx_hash in seen:
                continue
            seen.add(event.tx_hash)
            gas.setdefault(call, []).append(int(client.w3.eth.get_transaction_receipt(event.tx_hash)["gasUsed"]))
    return gas


def register_gas(client: Any, model_hashes: list[str]) -> list[int]:
    """gasUsed of the registrations of these models (ModelRegistered is indexed by model hash)."""
    events = client.get_logs([client.deployment.registry], [None, list(model_hashes)])
    return [int(client.w3.eth.get_transaction_receipt(e.tx_hash)["gasUsed"]) for e in events]


def stake_row(client: Any, address: str) -> dict[str, str]:
    info = client.stake_info(address)
    return {k: str(getattr(info, k)) for k in ("staked", "available", "locked", "unbonding")}


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    jobs = Table(title="Jobs")
    for column in ("job", "what", "worker", "final state"):
        jobs.add_column(column)
    for job in summary["jobs"]:
        jobs.add_row(str(job["job_id"]), job["what"], job["worker"], job["state"])
    gas = Table(title="Gas per call (median of this run)")
    gas.add_column("call"), gas.add_column("gas", justify="right"), gas.add_column("samples", justify="right")
    for call, values in summary["gas"].items():
        gas.add_row(call, f"{sorted(values)[len(values) // 2]:,}", str(len(values)))
    from protocol.amounts import format_tokens

    stake = Table(title="Stake (tokens, exact)")
    for column in ("account", "when", "staked", "available", "locked"):
        stake.add_column(column)
    for who, rows in summary["stake"].items():
        for when, row in rows.items():
            stake.add_row(who, when, *(format_tokens(int(row[k])) for k in ("staked", "available", "locked")))
    phases = Table(title="Wall time per phase")
    phases.add_column("phase"), phases.add_column("seconds", justify="right")
    for name, seconds in summary["phases"].items():
        phases.add_row(name, f"{seconds:.1f}")
    for table in (jobs, gas, stake, phases):
        console.print(table)


def start_llama_import(store: Path) -> subprocess.Popen:
    """Write the tiny random Llama checkpoint and start `tessera model import` on it (in the background)."""
    from demo.lora_phase import write_tiny_llama_checkpoint

    checkpoint = WORK / "tiny-llama"
    architecture = write_tiny_llama_checkpoint(checkpoint)
    say(f"wrote a tiny random {architecture} checkpoint (config.json + model.safetensors) to {checkpoint}")
    cmd = [sys.executable, "-m", "protocol.cli.main", "model", "import", str(checkpoint),
           "--out", str(WORK / "tiny-llama.fragment.json"), "--store", str(store)]
    return subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def post_lora_job(submitter: Any, store: Path, importing: subprocess.Popen) -> dict[str, Any]:
    """Register the imported base (Declared) and post a LoRA fine-tune of it; the job's id and hashes."""
    from demo.lora_phase import DATASET_DESCRIPTION, lora_spec, token_dataset
    from protocol.artifacts import LocalStore
    from protocol.publishing import publish_spec

    output, _ = importing.communicate(timeout=PHASE_TIMEOUT_S)
    print(f"    $ tessera model import {WORK / 'tiny-llama'} --out tiny-llama.fragment.json\n    "
          + output.strip().replace("\n", "\n    "), flush=True)
    if importing.returncode != 0:
        raise DemoError(f"`tessera model import` failed ({importing.returncode})")
    local = LocalStore(store)
    dataset = local.put(token_dataset())
    spec = lora_spec(WORK / "tiny-llama.fragment.json", {"hash": dataset, "uris": [local.uri]})
    base = spec.init_weights.hash
    submitter.register_model(base, license="Apache-2.0")
    say(f"base model {base} registered (Declared: imported, no job made it)")
    published = publish_spec(spec, local)
    job_id = int(submitter.post_job(spec, 5 * TOKEN, 25 * TOKEN, published.spec_uri).job_id)
    say(f"posted LoRA job {job_id}: rank {spec.lora.rank} on {', '.join(spec.lora.target_modules)}, "
        f"{spec.steps} steps in {spec.num_segments} segments over {DATASET_DESCRIPTION}")
    return {"job_id": job_id, "base": base, "spec": spec}


def register_adapter(submitter: Any, store: Path, lora: dict[str, Any], rpc_url: str,
                     deployment: Path) -> dict[str, Any]:
    """Wait for the LoRA job to finalize, fetch and check the adapter, register it (relation adapter, the
    base as parent) and print `tessera model show` for it."""
    from protocol.artifacts import LocalStore
    from protocol.hashing import sha256_hex

    job_id, spec = lora["job_id"], lora["spec"]
    if wait_for_state(submitter, job_id, {"FINALIZED", "REJECTED", "EXPIRED"}) != "FINALIZED":
        raise DemoError(f"the LoRA job {job_id} did not finalize")
    adapter_bytes = submitter.fetch_result(job_id)  # checked against the committed output hash
    adapter = sha256_hex(adapter_bytes)
    local = LocalStore(store)
    local.put(adapter_bytes)  # our own copy, next to the base it adapts
    # the lineage comes from the spec: relation adapter, the base (init_weights) as parent, the dataset;
    # a model card with those fields goes into the store, pinned by hash in the record's metadata URI
    submitter.register_job_output(job_id, spec, license="Apache-2.0", card_store=local)
    say(f"adapter {adapter} ({len(adapter_bytes)} bytes) registered; `tessera model show` for it:")
    shown = tessera("--network", rpc_url, "--deployment", str(deployment), "model", "show", adapter, capture=True)
    print("    " + shown.strip().replace("\n", "\n    "), flush=True)
    return {"job_id": job_id, "base": lora["base"], "adapter": adapter,
            "lineage": submitter.lineage(adapter).model_dump(mode="json"), "show": shown}


def run_demo(stack: ExitStack) -> dict[str, Any]:
    from protocol.client import TesseraClient
    from protocol.chain import connect
    from protocol.deploy import Deployment
    from protocol.devnet import free_port, test_account_keys
    from eth_account import Account

    phases = Phases()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    store = WORK / "store"
    store.mkdir()
    keys = test_account_keys(8)
    accounts = {i: Account.from_key(keys[i]) for i in range(8)}
    summary: dict[str, Any] = {"jobs": [], "stake": {}, "gas": {}, "phases": phases.seconds}

    with phases("devnet and deployment"):
        port = free_port()
        devnet_dir = WORK / "devnet"
        # a block per transaction while deploying and staking (no transaction waits for a block time),
        # then a block a second, so the challenge windows run out on a quiet chain too
        tessera("devnet", "up", "--dir", str(devnet_dir), "--port", str(port), "--fresh")
        stack.callback(lambda: subprocess.run([sys.executable, "-m", "protocol.cli.main", "devnet", "down",
                                               "--dir", str(devnet_dir)], cwd=ROOT, capture_output=True))
        rpc_url = f"http://127.0.0.1:{port}"
        deployments = WORK / "deployments"
        tessera("--network", rpc_url, "--account", f"TEST::{DEPLOYER}", "deploy", "--params", "local",
                "--out-dir", str(deployments))
        deployment_path = deployments / "31337.json"
        w3 = connect(rpc_url, timeout=30.0)
        deployment = Deployment.load(deployment_path)
        client = TesseraClient(w3, deployment)
        for index in (SUBMITTER, WORKER, VERIFIER, CHEATER, PUPPET):
            persona = client.with_account(accounts[index])
            persona.faucet(1_000 * TOKEN)
            if index != SUBMITTER:
                persona.stake(STAKE_TOKENS * TOKEN)
        reply = w3.provider.make_request("evm_setIntervalMining", [1])
        if "error" in reply:
            raise DemoError(f"anvil refused interval mining: {reply['error']}")
        say(f"deployed at {rpc_url}; worker, verifier, cheater and its puppet staked {STAKE_TOKENS} tokens each")
        for who, index in (("worker", WORKER), ("cheater", CHEATER), ("puppet", PUPPET)):
            summary["stake"][who] = {"before": stake_row(client, accounts[index].address)}

    with phases("daemons up"):
        common = dict(rpc_url=rpc_url, deployment=deployment_path, store=store)
        worker_cfg = write_daemon_config(WORK / "worker.toml", account=f"TEST::{WORKER}", data_dir=WORK / "worker",
                                         section="worker", section_values={"device_class": "auto",
                                                                           "deadline_margin": 30.0}, **common)
        verifier_cfg = write_daemon_config(
            WORK / "verifier.toml", account=f"TEST::{VERIFIER}", data_dir=WORK / "verifier", section="verifier",
            section_values={"verify_fraction": 0.5, "watch_workers": [accounts[CHEATER].address],
                            "segments_per_check": 6}, **common)
        arbiter_cfg = write_daemon_config(WORK / "arbiter.toml", account=f"TEST::{ARBITER}",
                                          data_dir=WORK / "arbiter", section="arbiter", section_values={}, **common)
        honest = start_daemon(stack, "worker", "worker", worker_cfg)
        start_daemon(stack, "verifier", "verifier", verifier_cfg)
        start_daemon(stack, "arbiter", "arbiter", arbiter_cfg)
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while not [c for c in client.env_classes() if c.open]:  # jobs name a class the arbiter published
            if time.monotonic() > deadline:
                raise DemoError("the arbiter published no environment class")
            time.sleep(0.5)
        summary["env_classes"] = [c.env_class for c in client.env_classes() if c.open]
        say(f"the arbiter reproduces environment class {summary['env_classes'][0]}")

    example_args = ["--network", rpc_url, "--account", f"TEST::{SUBMITTER}", "--deployment", str(deployment_path),
                    "--store", str(store), "--out", str(WORK / "models")]
    submitter = client.with_account(accounts[SUBMITTER])
    with phases("training job (examples/submit_training.py)"):
        importing = start_llama_import(store)  # meanwhile: write and import the tiny Llama checkpoint
        output = run_example("submit_training.py", *example_args)
        parent, honest_jobs = model_hash_from(output), [job_id_from(output)]
    with phases("imported Llama: base registered, LoRA job posted"):
        lora = post_lora_job(submitter, store, importing)
    with phases("fine-tune job (examples/finetune.py)"):  # the worker runs the LoRA job first
        output = run_example("finetune.py", "--parent", parent, *example_args)
        child = model_hash_from(output)
        honest_jobs.append(job_id_from(output))
    for job_id, what in zip(honest_jobs, ("train digits MLP", "fine-tune it")):
        summary["jobs"].append({"job_id": job_id, "what": what, "worker": "honest",
                                "state": client.job_state(job_id).name})
    say("lineage of the fine-tuned model:")
    print(client.lineage(child).render(), flush=True)
    summary["models"] = {"parent": parent, "child": child}
    with phases("LoRA adapter registered"):
        summary["lora"] = register_adapter(submitter, store, lora, rpc_url, deployment_path)
    summary["jobs"].append({"job_id": lora["job_id"], "what": "LoRA on imported tiny Llama", "worker": "honest",
                            "state": client.job_state(lora["job_id"]).name})
    summary["stake"]["worker"]["after"] = stake_row(client, accounts[WORKER].address)

    with phases("cheating worker and its puppet caught"):
        say("stopping the honest worker; a worker that tampers with one segment takes the next job")
        honest.terminate()
        cheater_cfg = write_daemon_config(WORK / "cheater.toml", account=f"TEST::{CHEATER}",
                                          data_dir=WORK / "cheater", section="worker",
                                          section_values={"device_class": "auto", "deadline_margin": 30.0}, **common)
        start_daemon(stack, "cheater", "worker", cheater_cfg, persona="tamper-segment")
        from engine.datasets import put_builtin_datasets
        from engine.presets import digits_spec
        from protocol.artifacts import LocalStore

        local = LocalStore(store)
        put_builtin_datasets(local)
        spec = digits_spec(steps=60, segment_steps=10, seed=7)
        local.put(spec.canonical_bytes())
        receipt = submitter.post_job(spec, 10 * TOKEN, 50 * TOKEN, local.uri)
        job_id = int(receipt.job_id)
        wait_for_state(client, job_id, {"COMMITTED", "CHALLENGED", "REJECTED"})
        say("the cheater's puppet challenges a correct segment at once, to block honest challengers (audit F-01)")
        puppet = client.with_account(accounts[PUPPET])
        puppet_dispute, _ = puppet.challenge(job_id, "segment", 0)
        final = wait_for_state(client, job_id, {"REJECTED", "FINALIZED"})
        summary["jobs"].append({"job_id": job_id, "what": "train (tampered segment, puppet challenge)",
                                "worker": "cheater", "state": final})
        if final != "REJECTED":
            raise DemoError(f"the tampered job {job_id} ended {final}, not REJECTED")
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while any(d.open for d in client.disputes_of_job(job_id)):  # the verifier closes what is left
            if time.monotonic() > deadline:
                raise DemoError(f"disputes of job {job_id} still open")
            time.sleep(0.5)
        summary["disputes"] = [{**d.model_dump(mode="json"), "status": d.status.label,
                                "claim": d.claim.label if d.claim else None, "puppet": d.dispute_id == puppet_dispute}
                               for d in client.disputes_of_job(job_id)]
        for who, index in (("cheater", CHEATER), ("puppet", PUPPET)):
            summary["stake"][who]["after"] = stake_row(client, accounts[index].address)

    summary["jobs"].sort(key=lambda job: job["job_id"])  # the table in posting order
    all_jobs = [job["job_id"] for job in summary["jobs"]]
    summary["gas"] = gas_by_call(client, all_jobs)
    registered = register_gas(client, [parent, child, summary["lora"]["base"], summary["lora"]["adapter"]])
    if registered:
        summary["gas"]["register"] = registered
    return summary


def main() -> int:
    started = time.perf_counter()
    with ExitStack() as stack:
        try:
            summary = run_demo(stack)
        except KeyboardInterrupt:
            say("interrupted: stopping every process")
            return 130
        except Exception as exc:
            say(f"FAILED: {type(exc).__name__}: {exc}")
            say(f"logs are in {WORK}/")
            return 1
    summary["total_s"] = round(time.perf_counter() - started, 1)
    SUMMARY_PATH.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_summary(summary)
    say(f"done in {summary['total_s']:.0f}s; summary written to {SUMMARY_PATH.name}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TESSERA_DEMO", "1")
    sys.exit(main())
