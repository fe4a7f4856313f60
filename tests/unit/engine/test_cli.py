"""`tessera spec`, `tessera run`, `tessera replay` through click, as a user runs them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from protocol.cli.engine_cmds import replay, run, spec

from .helpers import tiny_digits


def test_spec_schema_and_validate(tmp_path) -> None:
    runner = CliRunner()
    schema = runner.invoke(spec, ["schema"])
    assert schema.exit_code == 0 and "TransformerBlock" in json.loads(schema.output)["$defs"]
    good = tmp_path / "good.json"
    good.write_bytes(tiny_digits().canonical_bytes())
    ok = runner.invoke(spec, ["validate", str(good), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["spec_hash"] == tiny_digits().spec_hash()
    bad = tmp_path / "bad.json"
    data = tiny_digits().model_dump(mode="json")
    data["model"]["layers"][0]["in_features"] = 63
    data["batch_size"] = -1
    bad.write_text(json.dumps(data))
    failed = runner.invoke(spec, ["validate", str(bad)])
    assert failed.exit_code != 0
    assert "batch_size" in str(failed.exception) and "model.layers[0].in_features" in str(failed.exception)


def test_run_then_replay(tmp_path) -> None:
    runner = CliRunner()
    spec_file = tmp_path / "spec.json"
    spec_file.write_bytes(tiny_digits().canonical_bytes())
    store = tmp_path / "store"
    done = runner.invoke(run, [str(spec_file), "--json", "--store", str(store)])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    h1, h2 = result["state_hashes"][1], result["state_hashes"][2]
    replayed = runner.invoke(replay, [str(spec_file), "--checkpoint", str(store / h1[2:]), "--segment", "1",
                                      "--json", "--expect", h2, "--out", str(tmp_path / "reached")])  # fmt: skip
    assert replayed.exit_code == 0, replayed.output
    summary = json.loads(replayed.output)
    assert summary["reached_hash"] == h2 and summary["matches"] is True
    assert (tmp_path / "reached").read_bytes() == (store / h2[2:]).read_bytes()
    mismatch = runner.invoke(replay, [str(spec_file), "--checkpoint", str(store / h1[2:]), "--segment", "1",
                                      "--json", "--expect", result["state_hashes"][3]])  # fmt: skip
    assert mismatch.exit_code == 3 and json.loads(mismatch.output)["matches"] is False


def test_spec_example_is_a_valid_spec(tmp_path) -> None:
    from protocol.spec import load_spec

    for name in ("digits", "digits-cnn", "tiny-gpt"):
        printed = CliRunner().invoke(spec, ["example", name])
        assert printed.exit_code == 0, printed.output
        assert load_spec(printed.output.encode()).kind == "train"


def test_spec_coverage_says_which_calls_a_refereed_game_leaves_to_the_arbiter(tmp_path) -> None:
    """A portable GPT: every call has a rule (exit 0 even with --strict); a CNN pooling 4×4 windows by 1: its
    max_pool_backward's outputs are listed and --strict exits 3; a native spec is not refereed on chain."""
    from engine.presets import tiny_gpt_spec

    from ..portable.test_step_record import wide_pool_cnn

    runner = CliRunner()
    files = {}
    for name, task in (("gpt", tiny_gpt_spec(arithmetic="portable/1")), ("pool", wide_pool_cnn()),
                       ("native", tiny_digits())):  # fmt: skip
        files[name] = tmp_path / f"{name}.json"
        files[name].write_bytes(task.canonical_bytes())
    covered = runner.invoke(spec, ["coverage", str(files["gpt"]), "--json", "--strict"])
    assert covered.exit_code == 0, covered.output
    assert json.loads(covered.output) | {"spec_hash": None} == {
        "spec_hash": None, "arithmetic": "portable/1", "kind": "train", "refereed_on_chain": True, "reason": None,
        "uncovered": []}  # fmt: skip
    gaps = runner.invoke(spec, ["coverage", str(files["pool"]), "--json"])
    assert gaps.exit_code == 0, gaps.output
    listed = json.loads(gaps.output)
    assert listed["refereed_on_chain"] is False and listed["reason"] == "calls without an on-chain rule"
    assert {(c["kernel"], c["output"]) for c in listed["uncovered"]} == {("max_pool_backward", 0), ("max_pool_backward", 1)}
    strict = runner.invoke(spec, ["coverage", str(files["pool"]), "--strict"])
    assert strict.exit_code == 3 and "max_pool_backward" in strict.output
    native = json.loads(runner.invoke(spec, ["coverage", str(files["native"]), "--json"]).output)
    assert native["refereed_on_chain"] is False and native["reason"].startswith("native arithmetic")


def test_spec_coverage_lists_a_step_whose_dispute_kit_a_party_could_not_load(tmp_path, monkeypatch) -> None:
    """A job whose step record is larger than a kit is read with (here the limit lowered to a few kilobytes, as
    a model of tensors past 8 GiB is for the real one): no party could load its kit to play a move, so coverage
    lists it (kit: the bytes) and --strict exits 3; writing such a kit fails with that reason and writes nothing."""
    from engine.presets import tiny_gpt_spec
    from protocol import referee_kit as rk

    path = tmp_path / "gpt.json"
    path.write_bytes(tiny_gpt_spec(arithmetic="portable/1").canonical_bytes())
    monkeypatch.setattr(rk, "MAX_TENSOR_FILE_BYTES", 64 * 1024)
    listed = json.loads(CliRunner().invoke(spec, ["coverage", str(path), "--json"]).output)
    assert listed["refereed_on_chain"] is False and listed["reason"] == "a step's dispute kit too large to play"
    [row] = listed["uncovered"]
    assert row["kernel"] == "kit" and row["bytes"] > 64 * 1024, row
    strict = CliRunner().invoke(spec, ["coverage", str(path), "--strict"])
    assert strict.exit_code == 3 and "kit" in strict.output
