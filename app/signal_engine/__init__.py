"""`python -m app.signal_engine.main`: the seed's name for `python -m tidegate.services.signal_engine`."""
