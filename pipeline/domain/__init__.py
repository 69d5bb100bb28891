"""Pure decision logic: no I/O, no imports of adapters, stages or the gateway."""
