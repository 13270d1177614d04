"""Shim: ``python -m app.ai_scorer.main`` runs tidegate.services.ai_scorer (same flags, env and config)."""

from tidegate.services.ai_scorer import main

if __name__ == "__main__":
    raise SystemExit(main())
