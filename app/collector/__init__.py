"""`python -m app.collector.main`: the seed's name for `python -m tidegate.services.collector`."""
