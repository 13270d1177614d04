"""The Kubernetes driver of the release engine: a kopf operator for ModelRelease resources.

- ``crd.py`` / ``openapi.py``: the CRD, generated from the engine's pydantic models;
- ``store.py``: the release's state in the custom resource (``.status``), manual
  commands in an annotation, the rollback cooldown read from sibling releases;
- ``runner.py``: one thread per release running the *same* driver loop as the local
  driver (tidegate.release.local.LocalDriver) with the Kubernetes store, posting a
  Kubernetes Event for every decision;
- ``handlers.py``: the kopf handlers (daemon per release, finalizer on delete);
- ``main.py``: registers them on kopf's default registry:
  ``kopf run -m tidegate.operator.main --all-namespaces``. Nothing else registers
  handlers on import, so the CRD tooling and the tests have no side effects.
"""

COMMAND_ANNOTATION = "tidegate.dev/command"
