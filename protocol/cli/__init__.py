"""The `tessera` command line (click).

`protocol.cli.main` holds the lazy root group; every command group lives in its own module and is
imported only when it is used, so `tessera --help` stays fast and never imports torch, ape or web3.
"""
