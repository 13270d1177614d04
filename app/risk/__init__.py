"""`python -m app.risk.main`: the seed's name for `python -m tidegate.services.risk`."""
