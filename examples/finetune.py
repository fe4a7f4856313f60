"""Fine-tune a registered model (by hash), register the child with relation finetune, print its lineage.

    python examples/finetune.py --parent 0x<model hash> --network ethereum:local:foundry --account TEST::1

The parent's weights must be in `--store` (examples/submit_training.py keeps them there); the job's
spec names them as `init_weights` by hash, so the worker can fetch and check them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tessera_example import TOKEN, collect_and_register, emit, log, post_spec, wait_finalized  # noqa: E402


def build_finetune_spec(store: object, parent_hash: str, steps: int, segment_steps: int) -> object:
    """The digits MLP again, kind finetune, starting from the parent's weights (named by hash)."""
    from engine.datasets import put_builtin_datasets
    from engine.presets import digits_spec
    from protocol.errors import ArtifactError

    if not store.has(parent_hash):
        raise ArtifactError(f"parent weights {parent_hash} are not in {store.uri}; run submit_training.py with this store")
    put_builtin_datasets(store)
    return digits_spec(
        kind="finetune", name="digits-mlp-finetune", steps=steps, segment_steps=segment_steps, seed=2,
        init_weights={"hash": parent_hash, "uris": [store.uri]},
        optimizer={"name": "adamw", "lr": 0.001, "weight_decay": 0.0},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", required=True, help="0x hash of the model to fine-tune")
    parser.add_argument("--network", default="ethereum:local:foundry")
    parser.add_argument("--account", default="TEST::1")
    parser.add_argument("--deployment", default=None)
    parser.add_argument("--store", default=".tessera/store")
    parser.add_argument("--store-url", default=None,
                        help="public http(s) URL serving --store (`tessera store serve`): the spec URI workers fetch")
    parser.add_argument("--out", default=".tessera/models")
    parser.add_argument("--payment", type=float, default=5.0)
    parser.add_argument("--collateral", type=float, default=25.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--segment-steps", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for finalization (default: 600 plus the deployment's execution "
                             "and challenge windows, about 8 h on testnet parameters)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from protocol.artifacts import open_store
    from protocol.client import TesseraClient
    from protocol.errors import TesseraError

    try:
        parent = args.parent.lower()
        client = TesseraClient.connect(args.network, account=args.account, deployment=args.deployment)
        if not client.model(parent).exists:
            log(f"warning: parent {parent} is not registered; the child's lineage will stop at it")
        store = open_store(args.store)
        spec = build_finetune_spec(store, parent, args.steps, args.segment_steps)
        job_id = post_spec(client, spec, store, int(args.payment * TOKEN), int(args.collateral * TOKEN), args.json,
                           store_url=args.store_url)
        wait_finalized(client, job_id, args.timeout, args.json)
        summary = collect_and_register(client, job_id, spec, store, Path(args.out),
                                       parents=[(parent, "finetune")], quiet=args.json)
    except TesseraError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
