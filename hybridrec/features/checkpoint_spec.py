"""How the text and image encoders accept a model: one rule for turning a user's choice into a checkpoint.

A choice is None (the weights enum's ``DEFAULT``), a member of the weights enum (``TextWeights``,
``ImageWeights``), a checkpoint object, or a name the encoder parses itself (a hub name or folder for
text, ``"arch[:weights]"`` for images).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

from hybridrec.errors import HybridRecError

CheckpointT = TypeVar("CheckpointT")


def resolve_checkpoint_spec(spec: Any, *, weights: type[enum.Enum], checkpoint_type: type[CheckpointT],
                            name_types: tuple[type, ...], from_name: Callable[[Any], CheckpointT],
                            expected: str) -> CheckpointT:
    """The checkpoint ``spec`` names.

    Args:
        spec: None, a ``weights`` member, a ``checkpoint_type`` instance, or a value of ``name_types``.
        weights: the encoder's enum of built-in checkpoints; ``weights.DEFAULT`` is used for None.
        checkpoint_type: the encoder's checkpoint class (returned unchanged).
        name_types: types of the names ``from_name`` parses.
        from_name: builds a checkpoint from a name.
        expected: what may be passed, starting the error message (``"text model must be ..."``).

    Raises:
        HybridRecError: ``spec`` is none of these.
    """
    if spec is None:
        return weights.DEFAULT.value
    if isinstance(spec, weights):
        return spec.value
    if isinstance(spec, checkpoint_type):
        return spec
    if isinstance(spec, name_types):
        return from_name(spec)
    raise HybridRecError(f"{expected}, not {type(spec).__name__}")
