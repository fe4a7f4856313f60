"""`tessera env show/list` name the portable class: the same descriptor on every machine."""

from __future__ import annotations


def test_env_show_and_list_name_the_portable_class(tessera, fresh_chain, client_of, arbiter) -> None:
    from engine.determinism import portable_env_class

    descriptor, portable = portable_env_class("portable/1")
    shown = tessera("env", "show", "--arithmetic", "portable/1", "--json", json_out=True)
    assert shown == {"env_class": portable, "descriptor": descriptor}
    assert "tessera-portable/1" in tessera("env", "show", "--arithmetic", "portable/1").stdout

    admin = client_of(arbiter)
    admin.send(admin.build_publish_env_class(portable, "file:///portable"))
    listed = tessera("env", "list", "--json", json_out=True)["env_classes"]
    kinds = {c["env_class"].lower(): c["kind"] for c in listed}
    assert kinds[portable] == "portable/1"
    assert set(kinds.values()) == {"portable/1", "machine"}  # the session deployment's machine class
    assert "portable/1" in tessera("env", "list").stdout
