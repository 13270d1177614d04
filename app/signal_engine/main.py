"""Shim: ``python -m app.signal_engine.main`` runs tidegate.services.signal_engine (same flags, env and config)."""

from tidegate.services.signal_engine import main

if __name__ == "__main__":
    raise SystemExit(main())
