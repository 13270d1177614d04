"""tidegate: progressive delivery for machine-learned trade scorers."""

__version__ = "0.1.0"
