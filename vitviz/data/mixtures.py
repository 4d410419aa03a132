"""``A:W+B:W``: a weighted mixture of sources.

Each batch item comes from one part, chosen with probability proportional to its weight. The mixture is labeled
only when every part has the same classes; otherwise its labels are -1 and a note says so.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .batches import ImageBatches

__all__: list[str] = []


class _Mixture(ImageBatches):
    """Each item from one part, chosen with probability proportional to the part's weight."""

    def __init__(self, name: str, parts: Sequence[ImageBatches], weights: Sequence[float]):
        first = parts[0]
        labeled = first.num_classes > 0 and all(p.class_names == first.class_names for p in parts)
        notes = [note for p in parts for note in p.notes]
        if not labeled and any(p.num_classes for p in parts):
            notes.append(f"The parts of {name} do not share one set of classes, so its labels are dropped (-1).")
        super().__init__(name, first.split, first.image_size, first.device,
                         class_names=first.class_names if labeled else (),
                         skipped=sum(p.skipped for p in parts), notes=notes)
        self.parts = tuple(parts)
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        weights = self.weights.to(generator.device)
        choice = torch.multinomial(weights, n, replacement=True, generator=generator).to(self.device)  # (n,)
        images = torch.empty(n, 3, self.image_size, self.image_size, device=self.device)
        labels = self._unlabeled(n)
        for i, part in enumerate(self.parts):
            rows = (choice == i).nonzero().squeeze(1)
            if len(rows):
                part_images, part_labels = part._draw(len(rows), generator, augment)
                images[rows] = part_images
                if self.num_classes:
                    labels[rows] = part_labels
        return images, labels
