"""RPC methods of the pairing app, one module per group."""

from . import approvals, devices, nodes  # noqa: F401
