"""What every HTTP API of the project shares: the error shape (`errors`) and how a request body is read
(`requests`). Used by the gateway, ingest and the reference ML service; imports no feature package."""
