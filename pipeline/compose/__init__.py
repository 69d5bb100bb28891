"""The composition root: the one place that decides what a process is made of — which adapters, which stages,
which routers — and wires them (`process.Process` from a `process.Plan`, `app.build_app` from `app.Parts`).
Every other package receives what it needs; nothing below imports from here."""
