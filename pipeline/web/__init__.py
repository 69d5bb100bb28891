"""HTTP serving helpers (uvicorn with guards, the doubled-prefix middleware); imports no feature package."""
