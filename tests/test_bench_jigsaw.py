"""bench/jigsaw_accuracy.py: a clear exit without a jigsaw checkpoint, the right numbers with one."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench" / "jigsaw_accuracy.py"
ARCH = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=0, pos_embed="none")


@pytest.fixture
def bench(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    torch.manual_seed(0)
    save_checkpoint(create_vit(ARCH, jigsaw_grid=(4, 4)), tmp_path / "tiny-jigsaw",
                    dict(name="tiny-jigsaw", kind="jigsaw", architecture=ARCH, jigsaw=dict(grid=[4, 4])))
    classifier = {**ARCH, "num_classes": 2, "pos_embed": "learn"}
    save_checkpoint(create_vit(classifier), tmp_path / "tiny-classifier",
                    dict(name="tiny-classifier", kind="classifier", architecture=classifier, class_names=["a", "b"]))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    spec = importlib.util.spec_from_file_location("jigsaw_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("checkpoint", ["no-such-model", "tiny-classifier"])
def test_a_missing_jigsaw_checkpoint_is_named(bench, checkpoint):
    with pytest.raises(SystemExit, match=f"No jigsaw checkpoint named '{checkpoint}'"):
        bench.main(["--checkpoint", checkpoint])
    with pytest.raises(SystemExit, match="No checkpoint file at"):
        bench.main(["--checkpoint", "/nowhere/model.safetensors"])


def test_the_table_reports_both_decoders_on_each_image_set(bench):
    from vitviz.data import fixed_set
    from vitviz.jigsaw import jigsaw_metrics, position_logits, shuffle_permutation
    from vitviz.models import load_model

    report = bench.main(["--checkpoint", "tiny-jigsaw", "--images", "6", "--seed", "3", "--device", "cpu"])
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[2].strip() for row in rows] == ["6", "4", "18"]
    # The crops row against the library, run here by hand.
    model = load_model("tiny-jigsaw", device="cpu")
    crops, _, _ = fixed_set("photos", "test", 32, 6, seed=3)
    permutations = shuffle_permutation(16, torch.Generator().manual_seed(3), batch_size=6)
    with torch.no_grad():
        m = jigsaw_metrics(position_logits(model, crops, permutations), permutations, grid_size=(4, 4))
    cells = [cell.strip() for cell in rows[0].split("|")[3:6]]
    assert cells == [f"{m[f'{c}_argmax']:.3f} / {m[f'{c}_hungarian']:.3f}" for c in ("patch_acc", "puzzle_acc", "displacement")]


def test_a_folder_of_photos_gets_its_own_row(bench, tmp_path):
    from PIL import Image

    from vitviz.inputs import model_pixels
    from vitviz.jigsaw import jigsaw_metrics, position_logits, shuffle_permutation
    from vitviz.models import load_model

    folder = tmp_path / "unseen"
    folder.mkdir()
    generator = torch.Generator().manual_seed(1)
    images = []
    for i, size in enumerate([(90, 60), (40, 70), (33, 33)]):  # landscape, portrait, square
        pixels = (torch.rand(size[1], size[0], 3, generator=generator) * 255).byte().numpy()
        images.append(Image.fromarray(pixels))
        images[-1].save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    report = bench.main(["--checkpoint", "tiny-jigsaw", "--images", "2", "--folder", str(folder), "--device", "cpu"])
    row = next(line for line in report.splitlines() if line.startswith("| photos in unseen/"))
    assert row.split("|")[2].strip() == "3"
    model = load_model("tiny-jigsaw", device="cpu")  # each set's shuffles start from the seed (0)
    permutations = shuffle_permutation(16, torch.Generator().manual_seed(0), batch_size=3)
    pixels = torch.cat([model_pixels(image, model) for image in images])
    with torch.no_grad():
        m = jigsaw_metrics(position_logits(model, pixels, permutations), permutations, grid_size=(4, 4))
    assert row.split("|")[3].strip() == f"{m['patch_acc_argmax']:.3f} / {m['patch_acc_hungarian']:.3f}"
    with pytest.raises(SystemExit, match="No .jpg, .png or .webp images in"):
        bench.main(["--checkpoint", "tiny-jigsaw", "--images", "2", "--folder", str(tmp_path)])
