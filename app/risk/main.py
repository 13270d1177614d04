"""Shim: ``python -m app.risk.main`` runs tidegate.services.risk (same flags, env and config)."""

from tidegate.services.risk import main

if __name__ == "__main__":
    raise SystemExit(main())
