"""Model lineage: walk `ModelRegistry` parents from a model to its roots, each node with its status.

A node is **JobVerified** when at least one attestation says it is the committed output of a Finalized
job (the node shows that job's submitter and worker, and whether they are one address); otherwise
**Declared** (self-attested), or **Unknown** for a parent hash that was never registered. Parents are
the union over the node's attestations. The registry keeps lineage acyclic on chain; the walk is still
bounded (`max_depth`) and remembers visited hashes, and a node cut by the bound is marked `truncated`.
"""

from __future__ import annotations

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


def lineage(client: Any, model_hash: str, max_depth: int = 16) -> LineageNode:
    """The lineage tree of `model_hash` via `client.model(hash)`, at most `max_depth` levels of parents."""
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    seen: set[str] = set()

    def visit(hash_hex: str, depth: int, relation: str | None) -> LineageNode:
        key = hash_hex.lower()
        view = client.model(key)
        node = LineageNode(
            model_hash=view.model_hash,
            status=STATUS_NAMES.get(view.status, str(view.status)) if view.exists else "Unknown",
            relation=relation,
            depth=depth,
            creator=view.creator if view.exists else None,
            job_id=view.job_id,
            job_submitter=view.job_submitter if view.job_id else None,
            job_worker=view.job_worker if view.job_id else None,
            attestations=len(view.attestations),
            spec_hash=view.spec_hash if view.exists else None,
            datasets=list(view.datasets),
            metadata_uri=view.metadata_uri,
            license=view.license,
        )
        if key in seen:
            return node.model_copy(update={"repeated": True, "datasets": [], "parents": []})
        seen.add(key)
        if view.parents and depth >= max_depth:
            return node.model_copy(update={"truncated": True})
        node.parents = [visit(p.model_hash, depth + 1, p.relation_name) for p in view.parents]
        return node

    return visit(model_hash, 0, None)
