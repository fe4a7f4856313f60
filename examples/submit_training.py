"""Submit a training job on the bundled digits dataset, wait for it, verify the result, register the model.

    python examples/submit_training.py --network ethereum:local:foundry --account TEST::1 --store .tessera/store

`--arithmetic portable/1` posts it in portable arithmetic: the job then goes to the portable environment
class, which any CPU or GPU reproduces (docs/arithmetic.md), chosen by `post_job` from the spec.

Needs a deployment for the chain (`tessera deploy`) and a worker running (`tessera worker run`); the
spec, the dataset and the resulting weights all go through the artifact store named by `--store`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tessera_example import TOKEN, collect_and_register, emit, log, post_spec, wait_finalized  # noqa: E402


def build_spec(store: object, steps: int, segment_steps: int, arithmetic: str = "native") -> object:
    """The digits MLP spec; the dataset is put into the store so any worker can fetch it by hash."""
    from engine.datasets import put_builtin_datasets
    from engine.presets import digits_spec

    put_builtin_datasets(store)
    return digits_spec(steps=steps, segment_steps=segment_steps, arithmetic=arithmetic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="ethereum:local:foundry")
    parser.add_argument("--account", default="TEST::1", help="ape keystore alias or TEST::<n>")
    parser.add_argument("--deployment", default=None, help="deployment file (default deployments/<chain_id>.json)")
    parser.add_argument("--store", default=".tessera/store", help="artifact store directory or URI")
    parser.add_argument("--store-url", default=None,
                        help="public http(s) URL serving --store (`tessera store serve`): the spec URI workers fetch")
    parser.add_argument("--out", default=".tessera/models", help="where to keep the verified weights")
    parser.add_argument("--payment", type=float, default=10.0, help="tokens")
    parser.add_argument("--collateral", type=float, default=50.0, help="tokens")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--segment-steps", type=int, default=25)
    parser.add_argument("--arithmetic", choices=["native", "portable/1"], default="native",
                        help="portable/1: the same bits on any machine, judged in the portable class")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for finalization (default: 600 plus the deployment's execution "
                             "and challenge windows, about 8 h on testnet parameters)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)

    from protocol.artifacts import open_store
    from protocol.client import TesseraClient
    from protocol.errors import TesseraError

    try:
        client = TesseraClient.connect(args.network, account=args.account, deployment=args.deployment)
        store = open_store(args.store)
        spec = build_spec(store, args.steps, args.segment_steps, args.arithmetic)
        job_id = post_spec(client, spec, store, int(args.payment * TOKEN), int(args.collateral * TOKEN), args.json,
                           store_url=args.store_url)
        wait_finalized(client, job_id, args.timeout, args.json)
        summary = collect_and_register(client, job_id, spec, store, Path(args.out), quiet=args.json)
    except TesseraError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    log("done", args.json)
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
