"""Point the registry's active or shadow slot at a model: ``--to active|shadow --id MODEL_ID``.

Refuses (exit 1, the previous model keeps its slot) a model whose model.onnx does not
hash to model.json's sha256 or whose schema hash differs from the live feature schema.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click


@click.command()
@click.option("--to", "slot", required=True, type=click.Choice(["active", "shadow"]))
@click.option("--id", "model_id", required=True, help="model id in the registry")
@click.option("--registry", "registry_root", default="models/registry", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--reason", default="manual promote_model.py")
def main(slot: str, model_id: str, registry_root: Path, reason: str) -> None:
    from tidegate.registry.promote import PromotionRefused, promote

    try:
        changed, previous = promote(registry_root, slot, model_id, reason=reason)  # type: ignore[arg-type]
    except PromotionRefused as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    if changed:
        click.echo(f"{slot}: {previous or '(none)'} -> {model_id}")
    else:
        click.echo(f"{slot} already points at {model_id}; nothing changed")


if __name__ == "__main__":
    main()
