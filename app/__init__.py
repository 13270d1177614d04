"""The seed's entry points (``python -m app.<service>.main``): shims over tidegate.services, no logic."""
