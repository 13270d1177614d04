"""`python -m app.ai_scorer.main`: the seed's name for `python -m tidegate.services.ai_scorer`."""
