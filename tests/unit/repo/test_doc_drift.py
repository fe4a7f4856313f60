"""Small doc drift the rehearsal found (#23): the deployment record's keys and the metrics' help text."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_deployments_readme_names_every_wiring_key_deploy_writes(deployment) -> None:
    # the keys of a real record (the session's deployment on anvil), not a reading of deploy.py's source
    import json

    written = set(json.loads(Path(deployment.path).read_text())["wiring"])
    assert {"Staking.wire", "JobEscrow.wire", "JobEscrow.seed"} <= written
    readme = (ROOT / "deployments" / "README.md").read_text()
    for key in written:
        assert f'"{key}"' in readme and f"`{key}`" in readme, key


def test_job_duration_metric_help_matches_the_operator_guide() -> None:
    from prometheus_client import CollectorRegistry

    from worker.runtime.metrics import DaemonMetrics

    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    described = re.search(r"\| `tessera_job_duration_seconds` \| ([^|]+) \|", guide).group(1).strip()
    metrics = DaemonMetrics("worker", registry=CollectorRegistry())
    assert metrics.job_duration._documentation.startswith(described), (metrics.job_duration._documentation, described)
