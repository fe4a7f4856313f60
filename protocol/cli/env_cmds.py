"""`tessera env …`: environment classes, the job term that says where results must reproduce bit for bit.

`show` describes this machine (imports torch, in a child process), or with `--arithmetic portable/1` the
portable class every machine reproduces (no machine field in it); `list` reads the classes the
deployment's arbiter published and names the portable ones; `publish` is the arbiter's (the arbiter
daemon does it at start).
"""

from __future__ import annotations

from typing import Any

import click

from protocol.cli.common import (
    HASH,
    json_option,
    make_client,
    pass_settings,
    print_fields,
    print_json,
    print_receipt,
    print_table,
)


@click.group("env")
def env() -> None:
    """Environment classes: this machine's, the deployment's, and publishing one (arbiter)."""


@env.command("show")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--cpu-capability", type=click.Choice(["default", "avx2", "avx512"]), default=None,
              help="Describe this CPU kernel set instead of the one the process picks.")
@click.option("--arithmetic", type=click.Choice(["native", "portable/1"]), default="native", show_default=True,
              help="portable/1: the class of portable jobs, the same on every machine (device options unused).")
@json_option
def show(device: str, cpu_capability: str | None, arithmetic: str, as_json: bool) -> None:
    """This machine's environment class on DEVICE (or the portable class): its hash and descriptor."""
    if arithmetic != "native":
        from engine.determinism import portable_env_class  # torch-free: nothing about this machine is asked

        descriptor, env_class = portable_env_class(arithmetic)
    else:
        from worker.judging import describe_environment

        environment = describe_environment(device, cpu_capability)
        descriptor, env_class = environment.descriptor, environment.env_class
    if as_json:
        print_json({"env_class": env_class, "descriptor": descriptor})
    else:
        print_fields(f"environment class {env_class}", descriptor)


@env.command("list")
@json_option
@pass_settings
def list_classes(settings: Any, as_json: bool) -> None:
    """The classes the deployment's arbiter published (jobs can be posted in the open ones)."""
    from engine.determinism import portable_env_classes

    classes = make_client(settings).env_classes()
    portable = portable_env_classes()  # hash -> arithmetic; any other class describes a machine
    kinds = [portable.get(c.env_class.lower(), "machine") for c in classes]
    if as_json:
        print_json({"env_classes": [{**c.model_dump(), "kind": kind} for c, kind in zip(classes, kinds)]})
        return
    print_table(f"environment classes ({len(classes)})", ["class", "kind", "open", "descriptor", "block"],
                [(c.env_class, kind, "yes" if c.open else "retired", c.descriptor_uri, c.block)
                 for c, kind in zip(classes, kinds)])


@env.command("publish")
@click.argument("env_class", type=HASH)
@click.option("--descriptor-uri", required=True, help="Where the descriptor JSON (named by the class) is served.")
@json_option
@pass_settings
def publish(settings: Any, env_class: str, descriptor_uri: str, as_json: bool) -> None:
    """Open ENV_CLASS for new jobs (the deployment's arbiter only)."""
    client = make_client(settings, need_account=True)
    receipt = client.send(client.build_publish_env_class(env_class, descriptor_uri))
    print_receipt(receipt, as_json, env_class=env_class)
