"""`make bench`: run every benchmark, write bench/results/latest.json and the table in docs/performance.md.

Each benchmark module exposes `measure() -> dict[str, Figure]` where a figure is
`{"value": number, "unit": str, "how": str}` (optionally `"target"`). Benchmarks never decide pass or
fail; a module that fails is recorded with its error so the rest still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results/latest.json"
PERFORMANCE_DOC = ROOT / "docs/performance.md"
TABLE_BEGIN = "<!-- bench:begin -->"
TABLE_END = "<!-- bench:end -->"

# Order matters only for reading the table: chain figures first, then compute, then end-to-end.
MODULES = [
    "bench.gas",
    "bench.hashing",
    "bench.commit_overhead",
    "bench.portable",
    "bench.lm_tokens",
    "bench.verify_cost",
    "bench.dispute_compute",
    "bench.economics",
    "bench.protocol_path",
]


def run(modules: list[str]) -> dict:
    figures: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for name in modules:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(name)
            result = module.measure()
        except Exception as exc:  # a broken benchmark must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            continue
        for key, figure in result.items():
            figure.setdefault("source", name)
            figures[key] = figure
        print(f"   {len(result)} figures in {time.perf_counter() - started:.1f}s", flush=True)
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": _cpus()},
        "figures": figures,
        "errors": errors,
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1_000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(report: dict) -> str:
    lines = [
        f"Measured {report['measured_at']} on {report['host']['machine']}, {report['host']['cpus']} CPU(s), "
        f"Python {report['host']['python']} (`make bench`)."
        + "".join(f" `{name}` re-measured {when} (`--only`)." for name, when in report.get("refreshed", {}).items()),
        "",
        "| figure | value | unit | target | how |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for key, fig in report["figures"].items():
        lines.append(
            f"| `{key}` | {_fmt(fig.get('value'))} | {fig.get('unit', '')} | {fig.get('target', '')} | {fig.get('how', '')} |"
        )
    for name, error in report["errors"].items():
        lines.append(f"| `{name}` | failed | | | {error} |")
    return "\n".join(lines)


def write_doc(report: dict) -> None:
    table = f"{TABLE_BEGIN}\n{markdown_table(report)}\n{TABLE_END}"
    if PERFORMANCE_DOC.exists():
        text = PERFORMANCE_DOC.read_text()
        if TABLE_BEGIN in text and TABLE_END in text:
            head, rest = text.split(TABLE_BEGIN, 1)
            text = head + table + rest.split(TABLE_END, 1)[1]
        else:
            text = text.rstrip() + "\n\n## Latest `make bench`\n\n" + table + "\n"
    else:
        text = "# Performance\n\n## Latest `make bench`\n\n" + table + "\n"
    PERFORMANCE_DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="module names (e.g. bench.gas) to run instead of all")
    args = parser.parse_args(argv)
    report = run(args.only or MODULES)
    if args.only and RESULTS.exists():
        # A partial run refreshes its own figures and keeps the others from the last full run.
        previous = json.loads(RESULTS.read_text())
        # the header keeps the full run's date and names each module measured since, with its own date
        report["refreshed"] = {**previous.get("refreshed", {}), **{name: report["measured_at"] for name in args.only}}
        report["measured_at"] = previous.get("measured_at", report["measured_at"])
        report["figures"] = {**previous.get("figures", {}), **report["figures"]}
        report["errors"] = {**{k: v for k, v in previous.get("errors", {}).items() if k not in args.only},
                            **report["errors"]}
    if RESULTS.exists() and "gpu" in (previous := json.loads(RESULTS.read_text())):
        report["gpu"] = previous["gpu"]  # measured by bench.gpu_check on a GPU host; a CPU run keeps it
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    write_doc(report)
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
