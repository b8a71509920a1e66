"""The hostile-input catalogue: malformed, oversized and forged requests, sent through nginx to every
configuration, each answered with its status and JSON-RPC error while the instances go on serving others
(`python -m loadtest hostile`; docs/load-tests.md)."""
