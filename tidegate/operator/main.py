"""Entry module for ``kopf run -m tidegate.operator.main``: the deployed operator."""

import kopf

from tidegate.operator.handlers import context_from_env, register

register(kopf.get_default_registry(), context_from_env)
