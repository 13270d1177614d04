"""Alerts into control events: the Alertmanager webhook bridge and the operator's CRIT (``tidegate control``)."""
