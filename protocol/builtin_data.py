"""What the datasets shipped with the engine hold, so a spec can be checked against them without torch.

A job whose model does not fit its dataset can only fail when the run starts; a worker that claimed
it would pay the expiry compensation for the submitter's mistake (audit F-12). For the built-in
datasets the check needs only these facts (dtypes, shapes, value ranges), so `protocol.spec` rejects
such a spec at load time: the SDK refuses to post it and every worker skips it before any claim.
Specs with other inputs are checked by the worker building checkpoint 0 in a budgeted child before
it claims (`worker.worker`). A unit test derives these facts from the shipped bytes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from protocol.spec import TRAINING_KINDS, first_leaf


class SplitFacts(BaseModel):
    """One split (`train` or `test`) of a dataset: its `x` and `y` tensors."""

    model_config = ConfigDict(frozen=True)

    rows: int
    x_dtype: str  # "float32" or "int64"
    x_shape: tuple[int, ...]  # one example
    x_max: int | None  # largest value of an int64 x (token ids); None for float x
    y_dtype: str
    y_shape: tuple[int, ...]  # one example's target
    y_max: int | None  # largest class id of an int64 y


class DatasetFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    splits: dict[str, SplitFacts]


BUILTIN_DATASETS: dict[str, DatasetFacts] = {
    "0x421fd4d42ad150ce000b25f6722e21e0199020e707b1ed2e699af1796277b160": DatasetFacts(name="digits", splits={
        "train": SplitFacts(rows=1_437, x_dtype="float32", x_shape=(64,), x_max=None,
                            y_dtype="int64", y_shape=(), y_max=9),
        "test": SplitFacts(rows=360, x_dtype="float32", x_shape=(64,), x_max=None,
                           y_dtype="int64", y_shape=(), y_max=9),
    }),
    "0xe568b7a0bc5c37b29464a8917b2b193e48d0aa00984785dbc79a8e283ce8fea6": DatasetFacts(name="tinytext", splits={
        "train": SplitFacts(rows=845, x_dtype="int64", x_shape=(32,), x_max=25,
                            y_dtype="int64", y_shape=(32,), y_max=25),
        "test": SplitFacts(rows=94, x_dtype="int64", x_shape=(32,), x_max=25,
                           y_dtype="int64", y_shape=(32,), y_max=25),
    }),
}  # fmt: skip


def dataset_fit_problems(spec: Any, facts: DatasetFacts, out: list[int]) -> list[str]:
    """Why the model of `spec` (whose output per example is `out`) cannot run on a dataset with
    `facts`; empty when it fits. The same rules as the engine's `parse_dataset`."""
    model = spec.model
    problems: list[str] = []
    if spec.loss == "causal_lm":  # every shipped dataset is x/y pairs, none is token ids with masks
        return [f"{facts.name} holds x/y pairs, not the input_ids (and attention_mask) of a causal_lm dataset"]
    for split, data in facts.splits.items():
        where = f"{facts.name} {split}"
        if data.x_dtype != model.input_dtype or list(data.x_shape) != list(model.input_shape):
            problems.append(f"{where}_x is {data.x_dtype} [N, {', '.join(map(str, data.x_shape))}], the model wants "
                            f"{model.input_dtype} [N, {', '.join(map(str, model.input_shape))}]")
            continue
        first = first_leaf(model.layers)
        if data.x_max is not None and first.type == "embedding" and data.x_max >= first.num_embeddings:
            problems.append(f"{where}_x has token ids up to {data.x_max}, the embedding has "
                            f"{first.num_embeddings}")
        if spec.loss == "cross_entropy":
            if data.y_dtype != "int64" or list(data.y_shape) != out[:-1]:
                problems.append(f"{where}_y is {data.y_dtype} {list(data.y_shape)} per example, cross_entropy "
                                f"needs int64 class ids {out[:-1]}")
            elif data.y_max is not None and data.y_max >= out[-1]:
                problems.append(f"{where}_y has class ids up to {data.y_max}, the model has {out[-1]} outputs")
        elif data.y_dtype != "float32" or list(data.y_shape) != out:
            problems.append(f"{where}_y is {data.y_dtype} {list(data.y_shape)} per example, mse needs float32 {out}")
    train = facts.splits["train"]
    if spec.kind in TRAINING_KINDS and train.rows < spec.batch_size:
        problems.append(f"{facts.name} has {train.rows} training examples, fewer than batch_size = {spec.batch_size}")
    return problems
