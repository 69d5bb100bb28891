"""HTTP plumbing shared by ingest and the gateway: errors, auth, body limits, the app factory, the server."""
