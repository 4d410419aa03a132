"""The Train view driven as a user drives it (AppTest): refused launches, jobs listed and cancelled, Compare."""

import time

import numpy as np
import pytest
import torch

from apptest import chart_specs, chart_titles, open_page
from vitviz.jigsaw import jigsaw_checkpoints
from training.jobs import JobRunner
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """An empty jobs root, and a user models folder with a tiny jigsaw and a tiny classifier checkpoint."""
    models = tmp_path / "models"
    jigsaw = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, pos_embed="none")
    classifier = dict(img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4)
    torch.manual_seed(0)
    save_checkpoint(create_vit(jigsaw, jigsaw_grid=(4, 4)), models / "tiny-jigsaw",
                    dict(name="tiny-jigsaw", kind="jigsaw", architecture=jigsaw, jigsaw=dict(grid=[4, 4])))
    save_checkpoint(create_vit(classifier), models / "tiny-classifier",
                    dict(name="tiny-classifier", kind="classifier", architecture=classifier,
                         class_names=["a", "b", "c", "d"]))
    monkeypatch.setenv("VITVIZ_MODELS", str(models))
    monkeypatch.setenv("VITVIZ_JOBS", str(tmp_path / "jobs"))
    yield tmp_path
    runner = JobRunner(tmp_path / "jobs")
    for job in runner.jobs():  # no training process outlives a failed test
        if job.active:
            runner.cancel(job.id)
            if runner.get(job.id).active:
                runner.cancel(job.id)


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_bad_choices_are_refused_with_their_reason(folders):
    at = open_page("train", sample="astronaut")
    assert not at.exception and not errors(at)
    at.number_input(key="train_steps").set_value(0)
    at.button(key="train_launch").click().run()
    assert errors(at) == ["steps 0 is out of range: choose a whole number from 1 to 100,000"]

    at.number_input(key="train_steps").set_value(20)
    at.text_input(key="train_name_finetune").set_value("../outside")
    at.button(key="train_launch").click().run()
    assert errors(at)[0].startswith("checkpoint name '../outside' is not allowed")

    at.text_input(key="train_name_finetune").set_value("fine")
    at.selectbox(key="train_init").set_value("tiny-classifier").run()
    assert at.number_input(key="train_image_size").value == 48  # the classifier's own input size
    at.radio(key="train_mode").set_value("last").run()
    at.number_input(key="train_blocks").set_value(3)
    at.button(key="train_launch").click().run()
    assert errors(at) == ["--train-blocks 3 is more than the model's 2 blocks (choose 1 to 2, or --mode full)"]
    at.radio(key="train_mode").set_value("full")

    at.selectbox(key="train_init").set_value("")
    at.selectbox(key="train_data_finetune").set_value("folder").run()
    at.text_input(key="train_folder").set_value(str(folders / "no-such-folder"))
    at.button(key="train_launch").click().run()
    assert errors(at)[0].startswith(f"No folder at {folders / 'no-such-folder'}. Give it one sub-folder of images per class")  # vitviz.data's words

    # jigsaw pretraining: unlabeled data offered, no starting checkpoint, its own name
    at.radio(key="train_task").set_value("pretrain").run()
    assert at.selectbox(key="train_data_pretrain").value == "photos:1+procedural:1"
    assert "train_init" not in [s.key for s in at.selectbox]
    assert at.text_input(key="train_name_pretrain").value == "my-jigsaw-1"
    # your own photos, no classes: a folder of any layout, checked before anything starts
    at.selectbox(key="train_data_pretrain").set_value("crops").run()
    at.button(key="train_launch").click().run()
    assert errors(at) == ["no folder given: type the absolute path of the folder that holds the images"]
    at.text_input(key="train_crops").set_value("photos/mine")
    at.button(key="train_launch").click().run()
    assert errors(at) == ["dataset folder 'photos/mine' is not an absolute path: the training process does not run "
                          "where the app does"]
    (folders / "notes").mkdir()
    (folders / "notes" / "todo.txt").write_text("no photos here")
    at.text_input(key="train_crops").set_value(str(folders / "notes"))
    at.button(key="train_launch").click().run()
    assert errors(at)[0].startswith(f"The folder {folders / 'notes'} holds no image files")
    assert not at.exception and JobRunner().jobs() == []


def test_launched_jobs_are_listed_queued_cancelled_and_found_by_a_new_session(folders):
    at = open_page("train", sample="astronaut")
    assert "tiny-jigsaw" in jigsaw_checkpoints()
    assert at.selectbox(key="train_init").value == jigsaw_checkpoints()[0]  # a jigsaw checkpoint is the default start
    at.selectbox(key="train_init").set_value("")
    at.selectbox(key="train_data_finetune").set_value("digits")
    at.number_input(key="train_steps").set_value(5000)
    at.button(key="train_launch").click().run()
    assert [s.value for s in at.success] == ["Launched **my-classifier-1**: started."]
    assert at.text_input(key="train_name_finetune").value == "my-classifier-2"  # a fresh name for the next one
    at.button(key="train_launch").click().run()
    assert [s.value for s in at.success] == ["Launched **my-classifier-2**: queued, place 1."]
    cards = [m.value for m in at.markdown if "my-classifier-" in m.value]
    assert "**my-classifier-2** · Classification fine-tuning on `digits` · 5000 steps · **queued**" in cards[0]
    assert "**my-classifier-1**" in cards[1] and cards[1].endswith("**running**")
    assert "Place 1 in the queue for cpu" in " ".join(c.value for c in at.caption)

    # a second browser tab (a new session) finds both
    other = open_page("train", sample="astronaut")
    assert [m.value.split("**")[1] for m in other.markdown if "my-classifier-" in m.value] == \
        ["my-classifier-2", "my-classifier-1"]

    runner = JobRunner()
    queued, running = runner.jobs()
    at.button(key=f"cancel-{queued.id}").click().run()
    assert runner.get(queued.id).state == "cancelled"
    at.button(key=f"cancel-{running.id}").click().run()
    deadline = time.monotonic() + 60
    while runner.get(running.id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    at.run()
    cards = [m.value for m in at.markdown if "my-classifier-" in m.value]
    assert all(c.endswith("**cancelled**") for c in cards) and len(cards) == 2


def test_a_jigsaw_run_launched_with_the_seam_loss_from_a_jigsaw_checkpoint_carries_both_to_its_command(folders):
    at = open_page("train", sample="astronaut")
    assert not [n for n in at.number_input if n.key == "train_seam"]  # a fine-tune has no seam loss
    at.radio(key="train_task").set_value("pretrain").run()
    starts = at.selectbox(key="train_init_pretrain")
    assert starts.value == "" and "tiny-jigsaw" in starts.options and "tiny-classifier" not in starts.options
    starts.set_value("tiny-jigsaw").run()
    assert not [s for s in at.selectbox if s.key == "train_model"]  # the size is the checkpoint's
    at.selectbox(key="train_data_pretrain").set_value("procedural:1+textured:1")
    at.number_input(key="train_seam").set_value(1.0)
    at.number_input(key="train_steps").set_value(5000)
    at.button(key="train_launch").click().run()
    assert [s.value for s in at.success] == ["Launched **my-jigsaw-1**: started."]
    (job,) = JobRunner().jobs()
    assert job.spec.seam_loss == 1.0 and job.spec.data == "procedural:1+textured:1" and job.spec.init == "tiny-jigsaw"
    options = dict(zip(job.command[4::2], job.command[5::2]))
    assert options["--seam-loss"] == "1.0" and options["--init"].endswith("tiny-jigsaw.safetensors")


def test_compare_shows_two_checkpoints_attention_and_their_difference(folders):
    at = open_page("train", sample="chelsea")
    assert chart_titles(at) == []  # drawn when asked, not on every visit
    at.toggle(key="compare_on").set_value(True).run()
    at.selectbox(key="compare_a").set_value("tiny-classifier")
    at.selectbox(key="compare_b").set_value("tiny-jigsaw").run()
    assert not at.exception
    assert chart_titles(at) == ["Rollout", "Layer 2, head 1"]
    at.slider(key="compare_layer").set_value(1)
    at.slider(key="compare_head").set_value(2).run()
    assert chart_titles(at) == ["Rollout", "Layer 1, head 2"]

    # the page shows what vitviz.compare computes: each model on its own grid (4x4 and 6x6), on a common 12x12
    from vitviz.compare import class_attention, common_grid
    from vitviz.samples import load_sample

    a_maps = class_attention(load_model("tiny-classifier", device="cpu"), load_sample("chelsea"), 0, 1)
    b_maps = class_attention(load_model("tiny-jigsaw", device="cpu"), load_sample("chelsea"), 0, 1)
    a, b = common_grid(a_maps[1], b_maps[1])
    assert a.shape == (12, 12) and abs(a.mean().item() - 1) < 1e-5
    heatmaps = [t for t in chart_specs(at)[1]["data"] if t["type"] == "heatmap"]
    shown_a, shown_b, difference = (torch.tensor(h["z"]) for h in heatmaps)
    assert torch.allclose(shown_a, a, atol=1e-5) and torch.allclose(shown_b, b, atol=1e-5)
    assert torch.allclose(difference, a - b, atol=1e-5)


def test_your_own_zip_is_imported_shown_probed_and_deleted(folders):
    from test_upload import make_zip, three_classes

    at = open_page("train", sample="astronaut")
    # a zip that would write outside its folder: refused in one sentence, nothing listed
    at.file_uploader(key="train_zip").set_value(("evil.zip", make_zip({"../x.png": b"x"}), "application/zip"))
    at.button(key="train_import").click().run()
    assert errors(at) == ["The zip entry '../x.png' climbs out of its folder with '..', which would land outside the "
                          "data set's folder, so the zip was refused."]
    assert not at.expander

    zipped = make_zip({**three_classes((10, 10, 5)), "red/notes.txt": b"not an image"})
    at.file_uploader(key="train_zip").set_value(("My colours!.zip", zipped, "application/zip"))
    at.button(key="train_import").click().run()
    assert not at.exception and not errors(at)
    assert [s.value for s in at.success] == ["Imported **My-colours**: 25 images in 3 classes; 1 file skipped "
                                             "(listed below)."]
    assert [e.label for e in at.expander] == ["**My-colours** · 3 classes · 25 images (20 train, 5 validation)"]
    counts = at.table[0].value
    assert counts.to_dict("index") == {"blue": {"images": 5, "train": 4, "validation": 1},
                                       "green": {"images": 10, "train": 8, "validation": 2},
                                       "red": {"images": 10, "train": 8, "validation": 2}}
    thumbnails = [[(i.caption, i.url != "") for i in e.proto.imgs] for e in at.get("image")]  # a few per class
    assert thumbnails == [[(c, True), ("", True), ("", True), ("", True)] for c in ("blue", "green", "red")]
    assert "1 file of the zip was skipped: red/notes.txt (This file is not an image" in \
        " ".join(c.value for c in at.caption)
    assert at.selectbox(key="train_data_finetune").value == "upload:My-colours"  # chosen for the next run

    # a linear probe from the tiny classifier: its classes, each one's accuracy and the confusion matrix
    at.selectbox(key="train_init").set_value("tiny-classifier").run()
    at.radio(key="train_mode").set_value("probe")
    at.number_input(key="train_steps").set_value(30)
    at.button(key="train_launch").click().run()
    assert [s.value for s in at.success] == ["Launched **my-classifier-1**: started."]
    job = JobRunner().jobs()[0]
    assert job.spec.mode == "probe" and job.spec.augment == "device" and job.spec.data == "upload:My-colours"
    deadline = time.monotonic() + 180
    while JobRunner().get(job.id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception and JobRunner().get(job.id).state == "finished"
    assert "my-classifier-1** · Classification fine-tuning on `upload:My-colours` from **tiny-classifier** · linear " \
           "probe · 30 steps" in " ".join(m.value for m in at.markdown)
    assert "Its classes: blue, green, red." in [c.value for c in at.caption]
    report = load_model("my-classifier-1", device="cpu").card.sidecar["class_report"]
    specs = {spec["layout"]["title"]["text"]: spec for spec in chart_specs(at) if spec["layout"].get("title")}
    figure = specs["Validation, 5 images"]
    heatmap = next(t for t in figure["data"] if t["type"] == "heatmap")
    assert np.array(heatmap["z"]).tolist() == report["confusion"] and heatmap["x"] == ["blue", "green", "red"]

    # a last-blocks fine-tune on your images is augmented by timm's transform
    at.radio(key="train_mode").set_value("last").run()
    at.button(key="train_launch").click().run()
    assert JobRunner().jobs()[0].spec.augment == "timm"

    at.button(key="delete-upload-My-colours").click().run()
    assert [i.value for i in at.info][:1] == ["Deleted the data set **My-colours**."]
    assert not at.expander and "upload:My-colours" not in at.selectbox(key="train_data_finetune").options
