"""Shim: ``python -m app.collector.main`` runs tidegate.services.collector (same flags, env and config)."""

from tidegate.services.collector import main

if __name__ == "__main__":
    raise SystemExit(main())
