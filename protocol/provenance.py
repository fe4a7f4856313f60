"""Model lineage: walk `ModelRegistry` parents from a model to its roots, each node with its status.

A node is **JobVerified** when at least one attestation says it is the committed output of a Finalized
job (the node shows that job's submitter and worker, and whether they are one address); otherwise
**Declared** (self-attested), or **Unknown** for a parent hash that was never registered. Parents are
the union over the node's attestations. The registry keeps lineage acyclic on chain; the walk is still
bounded (`max_depth`) and remembers visited hashes, and a node cut by the bound is marked `truncated`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator

from pydantic import BaseModel, Field

STATUS_NAMES = {0: "Unknown", 1: "Declared", 2: "JobVerified"}


class LineageNode(BaseModel):
    """One model in a lineage tree; `children` here are its *parents* (the tree grows to the roots)."""

    model_hash: str
    status: str  # Unknown | Declared | JobVerified
    relation: str | None = None  # how this node relates to the node that lists it (None at the top)
    depth: int = 0
    creator: str | None = None
    job_id: int = 0
    job_submitter: str | None = None
    job_worker: str | None = None
    attestations: int = 0
    spec_hash: str | None = None
    datasets: list[str] = Field(default_factory=list)
    metadata_uri: str = ""
    license: str = ""
    truncated: bool = False  # parents exist beyond max_depth
    repeated: bool = False  # already shown elsewhere in the tree (shared ancestor or a cycle)
    parents: list["LineageNode"] = Field(default_factory=list)

    def walk(self) -> Iterator["LineageNode"]:
        """Depth-first over this node and every ancestor."""
        yield self
        for parent in self.parents:
            yield from parent.walk()

    @property
    def roots(self) -> list["LineageNode"]:
        """Ancestors without parents (the origins)."""
        return [n for n in self.walk() if not n.parents and not n.truncated and not n.repeated]

    def chains(self) -> list[list["LineageNode"]]:
        """Every path from a root (an origin, or where the walk stopped) down to this model, root first."""
        if not self.parents:
            return [[self]]
        return [[*chain, self] for parent in self.parents for chain in parent.chains()]

    def render_chains(self) -> str:
        """One line per root-to-model path, oldest first: `base [Declared] -adapter-> model [JobVerified]`."""
        lines = []
        for chain in self.chains():
            text = f"{chain[0].model_hash} [{chain[0].status}]"
            for parent, child in zip(chain, chain[1:]):
                text += f" -{parent.relation}-> {child.model_hash} [{child.status}]"
            lines.append(text)
        return "\n".join(lines)

    def render(self, indent: str = "  ") -> str:
        """A plain-text tree, one model per line."""
        lines = []
        for node in self.walk():
            tags = [node.status]
            if node.relation:
                tags.insert(0, node.relation)
            if node.job_id:
                tags.append(f"job {node.job_id}")
                if node.job_submitter and node.job_submitter == node.job_worker:
                    tags.append("self-dealt")
            if node.attestations > 1:
                tags.append(f"{node.attestations} attestations")
            if node.truncated:
                tags.append("… deeper ancestors not shown")
            if node.repeated:
                tags.append("(shown above)")
            lines.append(f"{indent * node.depth}{node.model_hash} [{', '.join(tags)}]")
        return "\n".join(lines)


MAX_LINEAGE_NODES = 256  # models read per walk: a hostile registry can make a lineage as wide as it pays for


def lineage(client: Any, model_hash: str, max_depth: int = 16, max_nodes: int = MAX_LINEAGE_NODES) -> LineageNode:
    """The lineage tree of `model_hash` via `client.model(hash)`: at most `max_depth` levels of parents and
    `max_nodes` distinct models read, breadth first (a model's own parents before its grandparents). Each
    model is read once; a node whose parents the bounds leave out is marked `truncated`, a model already
    shown `repeated`."""
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    views: dict[str, Any] = {}

    def node_of(key: str, depth: int, relation: str | None) -> LineageNode:
        view = views[key]
        return LineageNode(
            model_hash=view.model_hash,
            status=STATUS_NAMES.get(view.status, str(view.status)) if view.exists else "Unknown",
            relation=relation,
            depth=depth,
            creator=view.creator if view.exists else None,
            job_id=view.job_id,
            job_submitter=view.job_submitter if view.job_id else None,
            job_worker=view.job_worker if view.job_id else None,
            attestations=view.attestation_count or len(view.attestations),
            spec_hash=view.spec_hash if view.exists else None,
            datasets=list(view.datasets),
            metadata_uri=view.metadata_uri,
            license=view.license,
        )

    top = model_hash.lower()
    views[top] = client.model(top)
    root = node_of(top, 0, None)
    queue: deque[tuple[LineageNode, str]] = deque([(root, top)])
    while queue:
        node, key = queue.popleft()
        parents = views[key].parents
        if not parents:
            continue
        new = {p.model_hash.lower() for p in parents} - set(views)
        if node.depth >= max_depth or len(views) + len(new) > max_nodes:
            node.truncated = True
            continue
        for parent in parents:
            parent_key = parent.model_hash.lower()
            if parent_key in new:
                new.discard(parent_key)
                views[parent_key] = client.model(parent_key)
                child = node_of(parent_key, node.depth + 1, parent.relation_name)
                queue.append((child, parent_key))
            else:  # a shared ancestor (or, were the chain to allow one, a cycle): shown once, named here
                child = node_of(parent_key, node.depth + 1, parent.relation_name)
                child.repeated, child.datasets = True, []
            node.parents.append(child)
    return root


# ------------------------------------------------------------------------------------------------
# A job's output: its relation to the spec's base model, read from the spec (never from the user)
# ------------------------------------------------------------------------------------------------


class JobOutputLineage(BaseModel):
    """What a finished job's output is, by its spec: the relation to the spec's `init_weights` (the base
    model), the parents to register (the base first) and the datasets it was trained on."""

    relation: str | None  # None for `train` (from scratch: no base)
    base_model: str | None  # the spec's init_weights hash
    parents: list[tuple[str, str]] = Field(default_factory=list)  # (model hash, relation name)
    datasets: list[str] = Field(default_factory=list)


# Relations that say "these weights were computed from that model's weights": a job's only such parent is its
# spec's init_weights. (merge, distill, other say what a spec cannot show; they stay the registrant's word.)
WEIGHT_RELATIONS = ("finetune", "adapter", "quantize")


def output_relation(spec: Any) -> str | None:
    """The relation of a training job's output to its base model: `adapter` for a LoRA finetune (the
    output is the adapter alone), `finetune` for a full finetune, None for `train` (no base). An `infer`
    or `eval` job outputs no model, so there is nothing to register."""
    from protocol.errors import PreflightError

    if spec.kind == "train":
        return None
    if spec.kind == "finetune":
        return "adapter" if spec.lora is not None else "finetune"
    raise PreflightError(f"an {spec.kind} job outputs no model (its output is results, not weights); "
                         "only train and finetune outputs are registered")


def job_output_lineage(spec: Any, relation: str | None = None,
                       extra_parents: list[tuple[str, str]] | tuple[()] = ()) -> JobOutputLineage:
    """Parents and datasets of the output of a job that ran `spec`.

    `relation`, when given, must be the one the spec implies (a LoRA finetune's output is an `adapter` of
    its base, a full finetune's a `finetune`); `extra_parents` (hash, relation name) are added after the
    base, which they may not name again with another relation, and none of them may be a `finetune`,
    `adapter` or `quantize` parent (the job's weights start from the base alone). A contradiction is a
    `ConfigError`."""
    from protocol.errors import ConfigError

    derived = output_relation(spec)
    base = spec.init_weights.hash.lower() if spec.init_weights is not None else None
    if relation is not None and relation != derived:
        if derived is None:
            raise ConfigError(f"relation {relation!r} contradicts the spec: a train job starts from no base model, "
                              "so its output has no parent to relate to")
        why = "a LoRA finetune outputs the adapter alone" if spec.lora is not None else "a full finetune"
        raise ConfigError(f"relation {relation!r} contradicts the spec: its output relates to the base model {base} "
                          f"as {derived!r} ({why})")
    parents: list[tuple[str, str]] = [(base, derived)] if base is not None and derived is not None else []
    for model_hash, parent_relation in extra_parents:
        if base is not None and model_hash.lower() == base:
            if parent_relation != derived:
                raise ConfigError(f"parent {model_hash}:{parent_relation} contradicts the spec: {base} is the base "
                                  f"model, and the output relates to it as {derived!r}")
            continue  # the base, as the spec says: already first
        if parent_relation in WEIGHT_RELATIONS:
            starts = f"from {base} alone" if base is not None else "from no weights (a train job)"
            raise ConfigError(f"parent {model_hash}:{parent_relation} contradicts the spec: the job's weights start "
                              f"{starts}, so no other model is their {parent_relation!r} parent")
        parents.append((model_hash.lower(), parent_relation))
    datasets = [spec.dataset.hash.lower()] if spec.dataset is not None else []
    return JobOutputLineage(relation=derived, base_model=base, parents=parents, datasets=datasets)


# ------------------------------------------------------------------------------------------------
# Reading a record against what can check it: the job's spec, the record itself (for its model card)
# ------------------------------------------------------------------------------------------------


def spec_lineage_problems(view: Any, spec: Any) -> list[str]:
    """How the lineage of JobVerified record `view` (its primary attestation: the job's) contradicts the
    spec that job ran. The registry checks the output hash and the spec hash, not the parents a submitter
    lists, so a submitter calling it directly can name any base; the spec (bound by its hash) cannot lie."""
    from protocol.errors import TesseraError

    try:
        expected = job_output_lineage(spec)
    except TesseraError as exc:  # an eval/infer job's output registered as a model
        return [str(exc)]
    listed = {p.model_hash.lower(): p.relation_name for p in view.parents}
    implied = dict(expected.parents)
    problems = []
    for model_hash, relation in implied.items():
        if model_hash not in listed:
            problems.append(f"the spec's base model {model_hash} ({relation}) is not a listed parent")
        elif listed[model_hash] != relation:
            problems.append(f"the base model {model_hash} is listed as {listed[model_hash]!r}; the spec makes the "
                            f"output its {relation!r}")
    for model_hash, relation in listed.items():
        if model_hash not in implied and relation in WEIGHT_RELATIONS:
            start = expected.base_model or "no weights (a train job)"
            problems.append(f"{model_hash} is listed as a {relation!r} parent, but the job's weights start from {start}")
    datasets = {d.lower() for d in view.datasets}
    problems += [f"the spec's dataset {d} is not listed" for d in expected.datasets if d not in datasets]
    return problems


def card_record_problems(card: Any, view: Any) -> list[str]:
    """Where model card `card` says something else than the on-chain record `view` (its primary attestation)
    about parents, relation, datasets, job or spec. The record is the authority; a card is whatever its
    author wrote (pinned only means unchanged since)."""
    from protocol.model_card import HF_RELATIONS

    problems = []
    parents = [(p.model_hash.lower(), p.relation_name) for p in view.parents]
    record_bases = sorted(h for h, _ in parents)
    if sorted(card.base_models) != record_bases:
        problems.append(f"base_model {card.base_models or '-'} is not the record's parents {record_bases or '-'}")
    section = card.tessera
    if sorted((p.model_hash, p.relation) for p in section.parents) != sorted(parents):
        problems.append("tessera.parents are not the record's parents and relations")
    if parents and card.base_model_relation is not None and card.base_model_relation != HF_RELATIONS.get(parents[0][1]):
        problems.append(f"base_model_relation {card.base_model_relation!r} is not the record's {parents[0][1]!r}")
    if parents and section.relation not in (None, parents[0][1]):
        problems.append(f"relation {section.relation!r} is not the record's {parents[0][1]!r}")
    if sorted(card.datasets) != sorted(d.lower() for d in view.datasets):
        problems.append("datasets are not the record's")
    if section.job_id and section.job_id != view.job_id:
        problems.append(f"job {section.job_id} is not the record's job {view.job_id}")
    zero = "0x" + "00" * 32
    if section.spec_hash and section.spec_hash != (view.spec_hash or zero).lower():
        problems.append(f"spec {section.spec_hash} is not the record's spec {view.spec_hash}")
    return problems
