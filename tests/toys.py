"""Hand-built stand-ins shared by the tests: a model card for toy modules whose right answer is known."""

from vitviz.card import ModelCard


def toy_card(image_size, patch_size, classes=3, embed_dim=8):
    """The card of a toy classifier with no prefix tokens, a patch grid tiling ``image_size``, ``classes`` classes."""
    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    return ModelCard(name="toy", source="file", provenance="built by a test", image_size=image_size,
                     patch_size=patch_size, grid_size=grid, num_prefix_tokens=0, has_class_token=False,
                     embed_dim=embed_dim, depth=0, num_heads=1, num_parameters=0, mean=(0.5, 0.4, 0.3),
                     std=(0.2, 0.25, 0.3), class_names=tuple(f"class {i}" for i in range(classes)))
