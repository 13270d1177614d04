"""`python -m app.executor.main`: the seed's name for `python -m tidegate.services.executor`."""
