"""Train: bring your own images, launch jigsaw pretraining or a fine-tune, watch it live, cancel it; compare two
models' attention."""

import numpy as np
import pandas as pd
import streamlit as st

import ui
from vitviz import plots
from vitviz.compare import class_attention, common_grid
from vitviz.devices import default_device
from vitviz.images import fit_to_model, to_tensor
from vitviz.jigsaw import jigsaw_checkpoints
from training.jobs import MODEL_SIZES, Job, JobRunner, JobSpec, JobSpecError, JobStateError, start_image_size
from vitviz.checkpoints import ModelLoadError, read_sidecar
from vitviz.data import DataError, UploadedSet, delete_upload, import_zip, list_uploads, read_upload
from vitviz.registry import list_models, uploads_dir

TASKS = {"finetune": "Classification fine-tuning", "pretrain": "Jigsaw pretraining"}
DATASETS = {
    "finetune": {"shapes": "shapes (4 classes, generated)", "digits": "digits (10 classes)"},
    "pretrain": {"photos:1+procedural:1": "photos + procedural (mixture)", "photos": "photos",
                 "procedural": "procedural", "textured": "textured (dead leaves cut from photos)",
                 "procedural:1+textured:1": "procedural + textured (mixture)", "shapes": "shapes", "digits": "digits"},
}
FOLDER, CROPS = "folder", "crops"
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:",
               "finished": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:"}
LAUNCHED, NOTICE = "train_launched", "train_notice"  # messages for the next run: what a launch, a cancel did
DONE_SEEN = "train_done_seen"  # the jobs that had ended with a checkpoint when the panel was last drawn
runner = JobRunner()


def run_options() -> JobSpec:
    """The New run widgets; returns what they describe (checked only on launch)."""
    task = st.radio("Task", list(TASKS), format_func=TASKS.get, horizontal=True, key="train_task")
    left, right = st.columns(2)
    with left:
        datasets = {**DATASETS[task], **upload_choices(), FOLDER: "An image folder (one sub-folder per class)…"}
        if task == "pretrain":
            datasets[CROPS] = "A folder of your photos (no classes needed)…"
        data = st.selectbox("Dataset", list(datasets), format_func=datasets.get, key=f"train_data_{task}")
        if data == FOLDER:
            data = "folder:" + st.text_input("Image folder (absolute path)", key="train_folder").strip()
        elif data == CROPS:
            data = "crops:" + st.text_input(
                "Photo folder (absolute path)", key="train_crops",
                help="Every image in it and its sub-folders, as random crops; one in ten is held out to score "
                     "the puzzle on.").strip()
        init = ""
        if task == "finetune":
            checkpoints = {e.ref: e.label for e in list_models() if e.source in ("checkpoint", "timm")}
            options = ["", *checkpoints]
            jigsaws = jigsaw_checkpoints()
            init = st.selectbox("Start from", options, index=options.index(jigsaws[0]) if jigsaws else 0,
                                format_func=lambda r: checkpoints.get(r, "random weights"), key="train_init",
                                on_change=start_changed,
                                help="A jigsaw checkpoint gives its blocks; a classifier checkpoint or a timm ViT "
                                     "everything but its head, which is made anew for your classes.")
            mode, train_blocks = finetune_mode()
        else:
            init = st.selectbox("Start from", ["", *jigsaw_checkpoints()], format_func=lambda r: r or "random weights",
                                key="train_init_pretrain",
                                help="A jigsaw checkpoint goes on learning under a new learning-rate schedule, "
                                     "with its own size and patch size.")
        model = "micro"
        if not init:
            model = st.selectbox("Model size", MODEL_SIZES, key="train_model",
                                 help="micro and tiny train in minutes on a CPU; the vit_* sizes want a GPU.")
        name_key = f"train_name_{task}"
        if name_key not in st.session_state:
            st.session_state[name_key] = runner.suggest_name("my-classifier" if task == "finetune" else "my-jigsaw")
        name = st.text_input("Checkpoint name", key=name_key)
    with right:
        steps = st.number_input("Steps", value=300, step=50, key="train_steps")
        batch_size = st.number_input("Batch size", value=32, step=8, key="train_batch")
        lr = st.number_input("Learning rate", value=1e-3, step=1e-4, format="%g", key="train_lr")
        if "train_image_size" not in st.session_state:
            st.session_state["train_image_size"] = 32
        image_size = st.number_input("Image size (px)", step=8, key="train_image_size",
                                     help="A start model keeps its patch size; its position table is resampled.")
        seed = st.number_input("Seed", value=0, key="train_seed")
        seam_loss = 0.0
        if task == "pretrain":
            seam_loss = st.number_input(
                "Seam loss weight", value=0.0, min_value=0.0, step=0.5, key="train_seam",
                help="Also ask each patch which patch lies to its right and which below it: only their borders "
                     "can say, so the model learns to match seams rather than memorise photos. 1 made the 7x7 "
                     "starter; 0 = off.")
    if task == "finetune":
        augment = "timm" if data.startswith("upload:") and mode != "probe" else "device"
        return JobSpec(task=task, name=name.strip(), data=data, init=init, model=model, image_size=int(image_size),
                       steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                       device=str(default_device()), mode=mode, train_blocks=int(train_blocks), augment=augment)
    return JobSpec(task=task, name=name.strip(), data=data, init=init, model=model, image_size=int(image_size),
                   steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                   device=str(default_device()), seam_loss=float(seam_loss))


def cancel(job_id: str) -> None:
    try:
        runner.cancel(job_id)
    except JobStateError as e:  # it ended between the drawing and the click
        st.session_state[NOTICE] = str(e)


def job_card(job: Job) -> None:
    spec = job.spec
    with st.container(border=True):
        st.markdown(f"{STATE_ICONS[job.state]} **{spec.name}** · {TASKS[spec.task]} on `{spec.data}`"
                    f"{f' from **{spec.init}**' if spec.init else ''}{mode_text(spec)} · {spec.steps} steps · "
                    f"**{job.state}**")
        if job.state == "queued":
            st.caption(f"Place {job.place} in the queue for {spec.device}: one job runs at a time per device.")
        if job.state == "running":
            st.progress(min(job.step / spec.steps, 1.0), text=f"step {job.step} of {spec.steps}")
        if job.active:
            stopping = job.cancel_requests > 0
            st.button("Kill now" if stopping else "Cancel", key=f"cancel-{job.id}", on_click=cancel, args=(job.id,),
                      help="Cancel stops after writing the last checkpoint; a second click kills the process.")
        rows = job.metrics()
        if rows:
            key = "patch_acc_hungarian" if spec.task == "pretrain" else "accuracy"
            curves = {split: np.array([[r["step"], r["loss"], r.get(key, r.get("accuracy"))] for r in rows
                                       if r["split"] == split]) for split in ("train", "val")}
            ui.show_figure(plots.training_curves(rows, accuracy_key=key), f"curves-{spec.name}",
                           {split: v for split, v in curves.items() if len(v)}, key=f"curves-{job.id}",
                           settings={"run": spec.name, "task": TASKS[spec.task], "data": spec.data,
                                     "init": spec.init or "random weights", "steps": spec.steps, "state": job.state},
                           units={split: f"rows: evaluations; columns: step, loss, {key}" for split in curves})
        if job.state == "failed":
            st.error(f"Failed: {job.error}")
        if job.note:
            st.warning(job.note)
        if job.state == "cancelled":
            st.caption(f"Cancelled at step {job.step}; " + (f"its best checkpoint so far, **{spec.name}**, is in "
                                                            "the model picker." if job.checkpoint.exists()
                                                            else "it wrote no checkpoint."))
        if job.state == "finished" and job.checkpoint.exists():
            st.success(f"**{spec.name}** is in the model picker in the sidebar.")
            sidecar = read_sidecar(job.checkpoint)
            st.table(pd.DataFrame(sidecar.get("metrics", {})).T.style.format("{:.3f}"))
            class_report(spec.name, sidecar)
        if job.active or job.state == "failed":
            st.code("\n".join(job.log_tail(12 if job.state == "failed" else 6)) or "(no output yet)", language=None)


def jobs_panel(jobs: list[Job], live: bool = False) -> None:
    """The jobs. ``live`` (while one is queued or running) redraws them every two seconds on their own, and
    reruns the whole app when one ends: the sidebar's model picker then lists the new checkpoint."""
    done = {j.id for j in jobs if j.checkpoint.exists() and not j.active}
    seen = st.session_state.setdefault(DONE_SEEN, done)
    st.session_state[DONE_SEEN] = done
    if live and (seen != done or not any(j.active for j in jobs)):
        st.rerun()
    if NOTICE in st.session_state:
        st.info(st.session_state.pop(NOTICE))
    if not jobs:
        st.info("No jobs yet: launch one above.")
    ended = [j for j in jobs if not j.active]
    for job in [j for j in jobs if j.active] + ended[:5]:
        job_card(job)


@st.fragment(run_every=2)
def live_jobs_panel() -> None:
    """Polled only while a job is queued or running: an idle page has nothing to refresh."""
    jobs_panel(runner.jobs(), live=True)


@st.cache_data(show_spinner="Computing attention…", max_entries=16)
def maps(ref: str, image_key: str, layer: int, head: int, _model, _image):
    return class_attention(_model, _image, layer, head)


SCALED = "class token attention over the patches, scaled to mean 1; rows and columns: the shared grid"


@st.fragment
def compare_section() -> None:
    """Two models' class-token attention on the current image; its own widgets rerun this part alone."""
    entries = {e.ref: e.label for e in list_models()}
    refs = list(entries)
    a_col, b_col = st.columns(2)
    ref_a = a_col.selectbox("Model A", refs, index=0, format_func=entries.get, key="compare_a")
    ref_b = b_col.selectbox("Model B", refs, index=min(1, len(refs) - 1), format_func=entries.get, key="compare_b")
    if ref_a == ref_b:
        st.info("Choose two different models.")
        return
    try:
        model_a, model_b = ui.cache.model(ref_a), ui.cache.model(ref_b)
    except ModelLoadError as e:
        st.error(f"Could not load a model to compare: {e}")
        return
    cards = model_a.card, model_b.card
    depth, heads = min(c.depth for c in cards), min(c.num_heads for c in cards)
    c1, c2 = st.columns(2)
    for key, largest in (("compare_layer", depth), ("compare_head", heads)):  # kept from models with more
        if st.session_state.get(key, 0) > largest:
            st.session_state[key] = largest
    # a slider needs two values at least
    layer = c1.slider("Layer", 1, depth, value=depth, key="compare_layer") - 1 if depth > 1 else 0
    head = c2.slider("Head", 1, heads, value=1, key="compare_head") - 1 if heads > 1 else 0
    if len({(c.depth, c.num_heads) for c in cards}) > 1:
        st.caption(f"The two models differ in depth or heads: layers 1-{depth} and heads 1-{heads} exist in both.")
    image, label = ui.context.current_image()
    key = ui.cache.image_key(image)
    a_maps, b_maps = (maps(ui.cache.model_key(ref), key, layer, head, m, image) for ref, m in ((ref_a, model_a), (ref_b, model_b)))
    size = max(224, *(c.image_size[0] for c in cards))
    shown = to_tensor(fit_to_model(image, (size, size)))
    st.caption(f"{label}; each model sees it at its own input size. Maps are the class token's attention over the "
               "patches, scaled to mean 1 (1 = every patch alike), on a grid both share.")
    for index, what in enumerate(("Rollout", f"Layer {layer + 1}, head {head + 1}")):
        a, b = common_grid(a_maps[index], b_maps[index])
        ui.show_figure(plots.attention_comparison(shown, a, b, (ref_a, ref_b), title=what),
                       f"compare-{what.split(',')[0].lower().replace(' ', '')}", {"a": a, "b": b, "a_minus_b": a - b},
                       key=f"compare-{index}",
                       settings={"model_a": ref_a, "model_b": ref_b, "image": label, "map": what},
                       units={"a": SCALED, "b": SCALED, "a_minus_b": f"a minus b, each {SCALED}"})


# --- your own images, the fine-tune's mode, its per-class results ---------------------------------

MODES = {"full": "Full fine-tune (every weight)", "last": "Last blocks and the head",
         "probe": "Linear probe (the head alone, on frozen features: seconds)"}
ZIP_MB = 200  # the zip uploader's own limit; the caps on what it holds are vitviz.data.import_zip's
UPLOAD_NOTICE = "train_upload_notice"  # (kind, message) of the last import or delete, for the next run
THUMBNAILS = 4  # per class


def upload_choices() -> dict[str, str]:
    """The uploaded sets as data choices: ``upload:NAME`` -> label."""
    return {f"upload:{u.name}": f"{u.name} (your images: {len(u.class_names)} classes, {u.size} images)"
            for u in list_uploads()}


def import_upload() -> None:
    """The Import button: the zip chosen becomes a data set, chosen as the next fine-tune's data."""
    upload = st.session_state.get("train_zip")
    if upload is None:
        st.session_state[UPLOAD_NOTICE] = ("error", "Choose a .zip of class folders first.")
        return
    name = st.session_state.get("train_upload_name", "").strip() or zip_name(upload.name)
    try:
        path = import_zip(upload, name, uploads_dir())
    except DataError as e:
        st.session_state[UPLOAD_NOTICE] = ("error", str(e))
        return
    imported = read_upload(path.name)
    skipped = f"; {files(len(imported.skipped))} skipped (listed below)" if imported.skipped else ""
    st.session_state[UPLOAD_NOTICE] = ("success", f"Imported **{name}**: {imported.size} images in "
                                                  f"{len(imported.class_names)} classes{skipped}.")
    st.session_state["train_data_finetune"] = f"upload:{name}"
    st.session_state["train_upload_name"] = ""


def files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def zip_name(filename: str) -> str:
    """A data set name from a zip's file name: its stem, with anything but letters, digits, '.', '_', '-' as '-'."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in filename.rsplit(".", 1)[0])
    return stem.strip("-._")[:64] or "my-images"


def remove_upload(name: str) -> None:
    try:
        delete_upload(name)
    except DataError as e:
        st.session_state[UPLOAD_NOTICE] = ("error", str(e))
        return
    st.session_state[UPLOAD_NOTICE] = ("info", f"Deleted the data set **{name}**.")
    for key in ("train_data_finetune", "train_data_pretrain"):
        if st.session_state.get(key) == f"upload:{name}":
            del st.session_state[key]


def own_images_section() -> None:
    """Upload a zip of class folders; each set with its classes, counts, split and thumbnails; delete one."""
    st.subheader("Your own images")
    st.caption("A .zip with one folder of images per class (cats/001.jpg, dogs/001.jpg, ...). It is checked before "
               "anything is written; files that are not images are skipped and counted. Each set gets a fixed "
               "train/validation split, stratified by class.")
    left, right = st.columns([3, 1])
    left.file_uploader(f"Zip of class folders (up to {ZIP_MB} MB)", type=["zip"], key="train_zip",
                       max_upload_size=ZIP_MB)
    right.text_input("Data set name", key="train_upload_name", placeholder="the zip's name")
    right.button("Import", key="train_import", on_click=import_upload)
    if UPLOAD_NOTICE in st.session_state:
        kind, message = st.session_state.pop(UPLOAD_NOTICE)
        getattr(st, kind)(message)
    for upload in list_uploads():
        upload_card(upload)


def upload_card(upload: UploadedSet) -> None:
    train, val = upload.split("train"), upload.split("val")
    with st.expander(f"**{upload.name}** · {len(upload.class_names)} classes · {upload.size} images "
                     f"({sum(map(len, train.values()))} train, {sum(map(len, val.values()))} validation)"):
        st.table(pd.DataFrame({"images": [len(p) for p in upload.files.values()],
                               "train": [len(p) for p in train.values()],
                               "validation": [len(p) for p in val.values()]}, index=list(upload.class_names)))
        for class_name, paths in upload.files.items():
            st.image([str(p) for p in paths[:THUMBNAILS]], width=72,
                     caption=[class_name] + [""] * (min(len(paths), THUMBNAILS) - 1))
        if upload.skipped:
            listed = "; ".join(f"{entry} ({why})" for entry, why in upload.skipped[:5])
            more = f"; and {len(upload.skipped) - 5} more" if len(upload.skipped) > 5 else ""
            st.caption(f"{files(len(upload.skipped))} of the zip {'was' if len(upload.skipped) == 1 else 'were'} "
                       f"skipped: {listed}{more}")
        st.button("Delete this data set", key=f"delete-upload-{upload.name}", on_click=remove_upload,
                  args=(upload.name,))


def start_changed() -> None:
    """A classifier or timm start model brings its own input size: offer it as the image size."""
    size = start_image_size(st.session_state.get("train_init", ""))
    if size is not None:
        st.session_state["train_image_size"] = size


def finetune_mode() -> tuple[str, int]:
    """What a fine-tune trains: (mode, how many of the last blocks)."""
    mode = st.radio("What trains", list(MODES), format_func=MODES.get, key="train_mode",
                    help="A linear probe computes the start model's features once and trains only a new head.")
    blocks = 2
    if mode == "last":
        blocks = st.number_input("Last blocks to train", min_value=1, value=2, step=1, key="train_blocks")
    return mode, int(blocks)


def mode_text(spec: JobSpec) -> str:
    if spec.task != "finetune" or spec.mode == "full":
        return ""
    return f" · {'linear probe' if spec.mode == 'probe' else f'last {spec.train_blocks} blocks'}"


def class_report(name: str, sidecar: dict) -> None:
    """A finished classifier's classes, each one's validation accuracy and the confusion matrix."""
    report = sidecar.get("class_report")
    if not report:
        return
    st.caption(f"Its classes: {', '.join(report['class_names'])}.")
    ui.show_figure(plots.class_accuracy(report["confusion"], report["class_names"],
                                        title=f"Validation, {sum(report['support'])} images"),
                   f"classes-{name}", {"confusion": np.array(report["confusion"])}, key=f"classes-{name}")


st.title("Train")
st.caption("Training runs in a process of its own: it goes on if you leave this page, reload it or restart the app.")
own_images_section()
st.subheader("New run")
spec = run_options()
if st.button("Launch", type="primary", key="train_launch"):
    try:
        launched = runner.submit(spec)
    except JobSpecError as e:
        st.error(str(e))
    else:
        del st.session_state[f"train_name_{spec.task}"]  # the next run gets a fresh name
        where = "started" if launched.state == "running" else f"queued, place {launched.place}"
        st.session_state[LAUNCHED] = f"Launched **{launched.spec.name}**: {where}."
        st.rerun()
if LAUNCHED in st.session_state:
    st.success(st.session_state.pop(LAUNCHED))
st.subheader("Jobs")
jobs = runner.jobs()
if any(job.active for job in jobs):
    live_jobs_panel()
else:
    jobs_panel(jobs)
st.subheader("Compare two models")
# Off until asked: its figures are most of this page's work, and a page opened to launch or watch a run (a second
# tab while a job trains on the same CPU) should not wait for them.
if st.toggle("Show two models' attention on the same image", key="compare_on"):
    compare_section()
