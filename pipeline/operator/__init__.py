"""The operator CLI: `pipeline incidents`, `pipeline decisions`, `pipeline workflows` and `pipeline status`, a client
of the gateway's REST API (docs/api.md) for a person at a terminal.

``client`` talks HTTP (the project's one client factory, `adapters.http`) and turns every failure into one line
and an exit status; ``tables`` renders rows as aligned columns (pure); ``views`` says which columns and fields each
command shows (pure); ``commands`` wires them to argparse. Every command's `--json` prints the route's JSON as the
gateway sent it.
"""
