"""Train: launch jigsaw pretraining or a fine-tune, watch it live, cancel it; compare two models' attention."""

import numpy as np
import pandas as pd
import streamlit as st

import ui
from vitviz import plots
from vitviz.compare import class_attention, common_grid
from vitviz.devices import default_device
from vitviz.images import fit_to_model, to_tensor
from vitviz.jigsaw import jigsaw_checkpoints
from training.jobs import MODEL_SIZES, Job, JobRunner, JobSpec, JobSpecError, JobStateError
from vitviz.checkpoints import ModelLoadError, read_sidecar
from vitviz.registry import list_models

TASKS = {"finetune": "Classification fine-tuning", "pretrain": "Jigsaw pretraining"}
DATASETS = {
    "finetune": {"shapes": "shapes (4 classes, generated)", "digits": "digits (10 classes)"},
    "pretrain": {"photos:1+procedural:1": "photos + procedural (mixture)", "photos": "photos",
                 "procedural": "procedural", "shapes": "shapes", "digits": "digits"},
}
FOLDER = "folder"
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
        datasets = {**DATASETS[task], FOLDER: "An image folder (one sub-folder per class)…"}
        data = st.selectbox("Dataset", list(datasets), format_func=datasets.get, key=f"train_data_{task}")
        if data == FOLDER:
            data = "folder:" + st.text_input("Image folder (absolute path)", key="train_folder").strip()
        init = ""
        if task == "finetune":
            checkpoints = {e.ref: e.label for e in list_models() if e.source == "checkpoint"}
            options = ["", *checkpoints]
            jigsaws = jigsaw_checkpoints()
            init = st.selectbox("Starting checkpoint", options, index=options.index(jigsaws[0]) if jigsaws else 0,
                                format_func=lambda r: checkpoints.get(r, "random weights"), key="train_init",
                                help="A jigsaw checkpoint's blocks give the classifier a head start.")
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
        image_size = st.number_input("Image size (px)", value=32, step=8, key="train_image_size")
        seed = st.number_input("Seed", value=0, key="train_seed")
    return JobSpec(task=task, name=name.strip(), data=data, init=init, model=model, image_size=int(image_size),
                   steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                   device=str(default_device()))


def cancel(job_id: str) -> None:
    try:
        runner.cancel(job_id)
    except JobStateError as e:  # it ended between the drawing and the click
        st.session_state[NOTICE] = str(e)


def job_card(job: Job) -> None:
    spec = job.spec
    with st.container(border=True):
        st.markdown(f"{STATE_ICONS[job.state]} **{spec.name}** · {TASKS[spec.task]} on `{spec.data}`"
                    f"{f' from **{spec.init}**' if spec.init else ''} · {spec.steps} steps · **{job.state}**")
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
            metrics = read_sidecar(job.checkpoint).get("metrics", {})
            st.table(pd.DataFrame(metrics).T.style.format("{:.3f}"))
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


st.title("Train")
st.caption("Training runs in a process of its own: it goes on if you leave this page, reload it or restart the app.")
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
