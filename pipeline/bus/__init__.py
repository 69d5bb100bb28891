"""The broker side: client factory, topic specs, the event producer, the stage runtime, dead letters."""
