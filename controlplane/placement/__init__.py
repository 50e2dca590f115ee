"""Where media runs: the SFU nodes' RPC client and the node registry."""
