"""Shim: ``python -m app.executor.main`` runs tidegate.services.executor (same flags, env and config)."""

from tidegate.services.executor import main

if __name__ == "__main__":
    raise SystemExit(main())
