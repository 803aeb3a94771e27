"""Data & Model: pick the data and the model, or train a new one in the background."""

import os
from pathlib import Path

import streamlit as st

from core.data.datasets import open_dataset
from core.defaults import DEFAULT_CORESET_RATIO, NETWORK_STRIDE
from core.data.native import estimated_training_seconds, rough_duration, working_resolution
from core.detectors import (DETECTOR_NAMES, RECOMMENDATION, RECOMMENDED_DETECTOR, good_for, label,
                            lends_its_encoder, training_options)
from core.detectors.common.patch_features import (BACKBONE_LABELS, BACKBONES, PACKAGED_BACKBONE,
                                                  imagenet_weights_path)
from core.detectors.features import BackboneUnavailable
from core.errors import InputError
from core.evaluation.before_after import convergence_note
from core.evaluation.detector_check import agreement_words, check_rows
from core.runs.bundles import MANIFEST_DIGEST
from core.runs.store import RUN_NAME_LIMIT, list_runs, phase, rename_run, run_name
from dashboard import figures, jobs, resources, session, workspace
from dashboard.words import as_code, as_text

# "good for" notes from the measured tables (README, "Which detector?")
BACKBONE_HELP = (
    "**The model's encoder**: fast (64 px, about 4 s to build on the demo); good when speed matters "
    "(demo 0.98, plain parts with missing pieces 0.96–0.98).  \n"
    "**EfficientNet-Lite0, ImageNet**: installed with the app, works at 224 px; the best on every set measured "
    "(real brick, fabric, stone and wood photographs 0.98–1.00 image AUROC, in colour; the demo 1.00). "
    "Slower: about 20 s to build on the demo, 11–13 images/s.  \n"
    "**ResNet-50 / MobileNetV2**: only when their Keras ImageNet weights files are already on this machine.")

RUN_ITSELF_KIND = "run"
# fitted on the chosen data's good images on the spot (the registry says which); the others are trained
FITTED_NOW = tuple(name for name in DETECTOR_NAMES if training_options(name).fitted_on_the_spot)
SHORT_NAMES = {"run": "the run itself", "memory_bank": "memory bank", "padim": "PaDiM"}
PATCH_CHOICES = ["whole image", 32, 48, 64, 96, 128]
CORESET_CHOICES = (0.01, 0.02, 0.05, 0.1, 0.25)


def detector_label(name: str, model_kind: str) -> str:
    if name == RUN_ITSELF_KIND:
        return f"The chosen model's own ({label(model_kind) if model_kind in DETECTOR_NAMES else model_kind})"
    return label(name) + (" (recommended)" if name == RECOMMENDED_DETECTOR else "")


@st.fragment(run_every=3)
def detector_check_result(data_kind: str, data_location: str) -> None:
    """The newest detector check of the chosen data: its progress, or its ranking (or why it failed)."""
    found = [(job_dir, status) for job_dir, status in jobs.detector_checks(resources.RUNS_ROOT)
             if (status.get("data_kind"), status.get("data_location")) == (data_kind, data_location)]
    if not found:
        return
    job_dir, status = found[0]
    if status.get("state") == "failed":
        st.error(f"The detector check failed: {as_text(status.get('message', 'unknown error'))}")
        return
    if status.get("state") != "complete":
        st.info(f"Checking… {as_text(status.get('message', 'waiting'))}", icon=":material/hourglass_top:")
        return
    report = read_check(job_dir)
    if report is None:
        st.error("The detector check's report could not be read.")
        return
    st.markdown(f"Trained on {report['training_images']} good images; judged on {report['held_out_images']} held-out "
                "good images and the same images with a synthetic defect.")
    st.dataframe([{key: value for key, value in row.items() if key != "name"} for row in check_rows(report)],
                 hide_index=True, width="stretch")
    if report.get("pick") in DETECTOR_NAMES:
        words = "Recommended" if report["recommendation"] else "First on this check"
        st.markdown(f"{words}: **{as_text(label(report['pick']))}**. {as_text(report['how_far_to_trust_it'])}")


def read_check(job_dir: Path) -> dict | None:
    import json

    try:
        report = json.loads((job_dir / jobs.CHECK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("rows"), list) else None


st.title("Data & Model")
data_column, model_column = st.columns(2)

with data_column:
    st.subheader("Data")
    source = st.radio("Source", ["Built-in demo set", "Folder on the server", "Upload a .zip"], horizontal=True,
                      index={"demo": 0, "folder": 1, "zip": 2}[session.data_choice().kind], key="data_source")
    if source == "Built-in demo set":
        if session.data_choice().kind != "demo":
            session.choose_data(session.DEMO_DATA)
    elif source == "Folder on the server":
        folder = st.text_input("Folder path", value=session.data_choice().location if session.data_choice().kind == "folder"
                               else "", placeholder="/data/casting", help="MVTec AD, casting or flat layout.")
        if st.button("Use this folder", disabled=not folder.strip()):
            try:
                allowed = resources.allowed_data_folder(folder.strip())
                open_dataset(allowed).close()
                session.choose_data(session.DataChoice("folder", str(allowed), folder.strip()))
            except InputError as error:
                st.error(as_text(error))
            except OSError as error:  # unreadable, not a folder, gone meanwhile: one sentence, no paths of ours
                st.error(as_text(f"{folder.strip()}: cannot be read as a data folder "
                                 f"({error.strerror or type(error).__name__})."))
    else:
        upload = st.file_uploader("Data set .zip (MVTec, casting or flat layout)", type=["zip"], key="dataset_zip")
        if upload is not None:
            path = resources.save_uploaded_zip(upload.getvalue())
            try:
                open_dataset(path).close()
                if session.data_choice().location != str(path):
                    session.choose_data(session.DataChoice("zip", str(path), upload.name))
            except InputError as error:
                st.error(as_text(str(error).replace(str(path), upload.name).replace(path.name, upload.name)))
    st.caption(f"In use: **{as_text(session.data_choice().label)}**")

with model_column:
    st.subheader("Model")
    all_runs = list_runs(resources.RUNS_ROOT, usable_only=False)
    runs = [run for run in all_runs if run.usable]
    options = {session.DEMO_MODEL.label: session.DEMO_MODEL}
    for run in runs:
        options[f"{run_name(run)} ({label(run.manifest['model_kind'])}, {run.run_id})"] = session.ModelChoice(
            str(run.path), run_name(run))
    for run in all_runs:
        if run.problem:  # a damaged or tampered run is skipped, never loaded: say so in one line
            st.caption(f":material/block: Run {as_code(run.run_id)} is skipped: {as_text(run.problem)}")
    labels = list(options)
    current = next((label for label, choice in options.items() if choice.path == session.model_choice().path), labels[0])
    picked = st.selectbox("Trained model", labels, index=labels.index(current),
                          help="The shipped demo model or a run trained here (runs/).")
    if options[picked].path != session.model_choice().path:
        session.choose_model(options[picked])

    # One place to choose the detector: the chosen model as it is, a detector fitted on this data now (memory bank,
    # PaDiM), or one to train (the form below trains or saves whichever is chosen here). The recommended one first.
    chosen_manifest = next((run.manifest for run in runs if str(run.path) == session.model_choice().path),
                           {"model_kind": "ncae"})  # the demo model is a 64 px grey NCAE
    offered = (RUN_ITSELF_KIND, RECOMMENDED_DETECTOR, *(name for name in DETECTOR_NAMES if name != RECOMMENDED_DETECTOR))
    current_kind = session.detector_choice().kind
    detector_kind = st.radio(
        "Detector", offered, horizontal=True, key="detector_kind", index=offered.index(current_kind),
        format_func=lambda name: detector_label(name, chosen_manifest["model_kind"]),
        help=f"The chosen model's own: the detector the model was trained as. {' and '.join(map(label, FITTED_NOW))} "
             "are fitted on this data's good images as you choose them (seconds). "
             f"{', '.join(label(name) for name in DETECTOR_NAMES if name not in FITTED_NOW)} are trained: the form "
             "below trains the one chosen here.")
    if detector_kind == RECOMMENDED_DETECTOR:
        st.caption(f"**{label(detector_kind)}**, {RECOMMENDATION}. {good_for(detector_kind)[0].upper()}"
                   f"{good_for(detector_kind)[1:]}.")
    elif detector_kind != RUN_ITSELF_KIND:
        st.caption(f"**{label(detector_kind)}**: {good_for(detector_kind)}. For most parts the "
                   f"{label(RECOMMENDED_DETECTOR).lower()} is the first choice "
                   f"({RECOMMENDATION.split(': ', 1)[1]}).")
    # One slot for what only the chosen detector has (the memory bank's backbone and size, a trained detector's
    # note): a choice of another detector replaces it at once. Elements written in the page's flow would stay on
    # screen until the end of the run, seconds later while the newly chosen detector is fitted.
    detector_controls = st.empty()
    if detector_kind == RUN_ITSELF_KIND or detector_kind not in FITTED_NOW:
        session.choose_detector(session.RUN_ITSELF)
        if detector_kind != RUN_ITSELF_KIND:
            detector_controls.info(f"{label(detector_kind)} is trained, not fitted on the spot: train a run with the "
                                   "form below. Until you choose the new run, the pages use the chosen model.",
                                   icon=":material/model_training:")
    elif detector_kind == "padim":
        session.choose_detector(session.DetectorChoice("padim", PACKAGED_BACKBONE))
    else:
        # the encoder backbone borrows the run's autoencoder; other runs have none to lend
        lends = lends_its_encoder(chosen_manifest["model_kind"], chosen_manifest.get("parameters", {}).get("patch_size"),
                                  chosen_manifest.get("channels", 1))
        backbones = BACKBONES if lends else tuple(b for b in BACKBONES if b != "encoder")
        controls = detector_controls.container()
        backbone = controls.selectbox("Backbone", backbones, key="detector_backbone", format_func=BACKBONE_LABELS.get,
                                help=BACKBONE_HELP)
        ratio = controls.select_slider("Memory bank size (share of good patches kept)", CORESET_CHOICES,
                                 value=session.detector_choice().coreset_ratio if session.detector_choice().kind ==
                                 "memory_bank" else DEFAULT_CORESET_RATIO, format_func="{:.0%}".format,
                                 key="detector_ratio")
        if backbone != "encoder":
            try:
                imagenet_weights_path(backbone)
            except BackboneUnavailable as error:
                controls.warning(f"{as_text(error)} Using the model's encoder instead.")
                backbone = "encoder"
        session.choose_detector(session.DetectorChoice("memory_bank", backbone, float(ratio)))

    # the detector chosen above; with the model's own chosen, another of the model's kind
    kind = chosen_manifest["model_kind"] if detector_kind == RUN_ITSELF_KIND else detector_kind
    title = (f"Train a {label(kind)} run on EfficientNet-Lite0 (saved with the runs, exportable)"
             if kind in FITTED_NOW else f"Train a new {label(kind)} run")
    with st.expander(title, expanded=detector_kind not in (RUN_ITSELF_KIND, *FITTED_NOW)):
        choice = session.data_choice()
        try:
            traits = resources.training_images_traits(choice.kind, choice.location)
        except InputError:
            traits = {"count": 0, "native": None, "channels": 1}
        patch, channels = None, traits["channels"]
        options = training_options(kind)   # which choices apply to this detector: the registry says
        epochs = 1
        if options.epochs is not None:
            epochs = st.number_input("Maximum epochs", 1, 500, options.epochs, key=f"train_epochs_{kind}")
        if options.fixed_size:
            size = options.size
            st.caption(f"Fitted in one pass over the good images at the backbone's {size} px (no epochs)."
                       if options.epochs is None else
                       f"Works at the backbone's {size} px: its features are computed once, then the autoencoder "
                       "learns to reconstruct them.")
        else:
            sizes, default_size, default_patch = list(options.sizes), options.size, None
            if options.size is None:   # the images' native size (see core.data.native)
                default_size, default_patch = working_resolution(traits["native"])
                sizes = sorted(set(sizes) | {default_size})
            size = st.select_slider("Working resolution (pixels, long side)", sizes, default_size,
                                    key=f"train_size_{kind}",
                                    help="Grey. Fine enough that one period of the weave spans a few pixels."
                                    if options.colour == "grey" else
                                    "Images are fitted to this size, aspect kept. The default is the images' "
                                    "native size, at most 512: a defect a few pixels across survives.")
            if options.patches:
                patch = st.select_slider(
                    "Training patch (pixels)", PATCH_CHOICES, default_patch or "whole image", key=f"train_patch_{kind}",
                    help="Train on random crops of this size and judge whole images: the training time depends on the "
                         "number of crops, not on the working resolution.")
                patch = None if patch == "whole image" else int(patch)
                if patch is not None and patch > size:
                    patch = None
            if options.epochs is None:
                st.caption("Fitted in one pass over the good images (no network, no epochs): a few seconds.")
        if options.colour == "imagenet":
            channels = 3 if st.toggle("Colour", True, key=f"train_colour_{kind}",
                                      help="ImageNet features see colour; off reads the images grey.") else 1
        elif options.colour == "data":
            channels = 3 if st.toggle("Colour", channels == 3, key=f"train_colour_{kind}",
                                      help="Default: colour when the training images are colour.") else 1
        if options.patches:
            seconds = estimated_training_seconds(int(size), patch, int(epochs), traits["count"])
            st.caption(f"Estimated training time: **at most about {rough_duration(seconds)}** "
                       f"({traits['count']} good images, {'colour' if channels == 3 else 'grey'}"
                       f"{f', {patch} px patches' if patch else ', whole images'}; early stopping may end it "
                       "sooner).")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        anomaly_source = ""
        if options.anomaly_source:
            anomaly_source = st.text_input(
                "Anomaly source folder (optional)", key="train_anomaly_source", placeholder="/data/textures",
                help="Pictures on the server (fabric, stone, rust…) pasted as synthetic defects while DRAEM "
                     "learns, besides its built-in sources: other good images and procedural patterns.").strip()
        mine = st.session_state.get("last_training")
        busy = bool(mine) and jobs.is_alive(mine)
        unfit = options.patches and patch is None and int(size) % NETWORK_STRIDE != 0
        if unfit:
            st.warning(f"Training on whole images needs a working resolution that is a multiple of {NETWORK_STRIDE} "
                       f"px; {size} px is not. Choose a training patch, or another resolution.")
        if st.button("Start training", type="primary", disabled=busy or unfit,
                     help="One training per browser session at a time." if busy else None):
            try:
                source = str(resources.allowed_data_folder(anomaly_source)) if anomaly_source else None
                if source is not None and not Path(source).is_dir():
                    raise InputError(f"{anomaly_source}: no such folder on the server.")
                run_dir = jobs.start_training(resources.RUNS_ROOT, choice.kind, choice.location, kind, int(epochs),
                                              int(size), int(seed), anomaly_source=source, patch_size=patch,
                                              channels=channels)
                st.session_state["last_training"] = run_dir.name
            except jobs.TooManyJobs as error:
                st.warning(as_text(error))
            except InputError as error:
                st.error(as_text(error))
        st.caption("Training runs in the background on this server: switch pages or reload, it keeps going.")

    with st.expander("Which detector suits these parts? Check on your good images"):
        st.caption("Holds out a share of the good training images, pastes synthetic defects on copies of them, trains "
                   "every detector on the rest as training would, and ranks the detectors by how well they tell the "
                   "held-out good images from the defective copies. No defect images needed; it trains every "
                   "detector, so it takes several minutes and runs in the background. "
                   + agreement_words())
        check_data = session.data_choice()
        checking = bool(st.session_state.get("last_check")) and jobs.is_alive(st.session_state["last_check"])
        if st.button("Check the detectors", icon=":material/rule:", disabled=checking,
                     help="One check per browser session at a time." if checking else None):
            st.session_state["last_check"] = jobs.start_detector_check(
                resources.RUNS_ROOT, check_data.kind, check_data.location, check_data.label).name
        detector_check_result(check_data.kind, check_data.location)


PHASE_ICONS = {"running": ":material/autorenew:", "finished": ":material/check_circle:",
               "cancelled": ":material/cancel:", "failed": ":material/error:",
               "interrupted": ":material/warning:", "damaged": ":material/block:"}


@st.fragment(run_every=2)
def run_list() -> None:
    """Every run with its state, which stays visible after a reload; a running one with its live loss curve."""
    runs = [run for run in list_runs(resources.RUNS_ROOT, usable_only=False) if run.status.get("state")]
    if not runs:
        return
    st.subheader("Runs")
    for run in runs:
        current = phase(run)
        if current == "running" and not jobs.is_alive(run.run_id) and run.status.get("pid") == os.getpid():
            current = "interrupted"   # its thread in this server died without a word
        status = run.status
        with st.container(border=True):
            head, rename, delete = st.columns([3, 2, 1])
            detail = {
                # a memory bank or PaDiM is fitted in one pass: no epochs to count, its message says what it does
                "running": f"epoch {status.get('epoch', 0)}/{status['epochs']}" if status.get("epochs") else
                           status.get("message", "working"),
                "finished": f"in {status.get('training_seconds', 0):.0f} s",
                "cancelled": status.get("message", ""),
                "failed": status.get("message", "unknown error"),
                "interrupted": f"at epoch {status.get('epoch', 0)}; its training process stopped, it cannot be used",
                "damaged": run.problem,
            }[current]
            head.markdown(f"{PHASE_ICONS[current]} **{as_text(run_name(run))}**  \n"
                          f"{current} · {label(status['model_kind']) if status.get('model_kind') in DETECTOR_NAMES else '?'} · {as_text(detail)}  \n"
                          f"{as_code(run.run_id)}")
            new_name = rename.text_input("Name", value=run_name(run), key=f"name-{run.run_id}",
                                         max_chars=RUN_NAME_LIMIT, label_visibility="collapsed",
                                         help="Type a new name and press Enter to rename the run.")
            if new_name != run_name(run):
                try:
                    rename_run(run.path, new_name)
                except ValueError as error:
                    rename.error(as_text(error))
            if current == "running":
                if delete.button("Cancel", key=f"cancel-{run.run_id}", icon=":material/stop:"):
                    jobs.cancel(Path(run.path))
                epochs = max(int(status.get("epochs", 1) or 1), 1)
                st.progress(min(int(status.get("epoch", 0)) / epochs, 1.0),
                            text=(f"loss {status['loss']:.5f} · val loss {status['val_loss']:.5f} · at most "
                                  f"{status.get('seconds_left', 0):.0f} s left") if "loss" in status else
                            status.get("message", "waiting"))
            elif delete.button("Delete", key=f"delete-{run.run_id}", icon=":material/delete:"):
                jobs.delete_run(resources.RUNS_ROOT, run.run_id)
                st.rerun()
            history = status.get("history") or {}
            if current == "running" and history.get("loss"):
                st.plotly_chart(figures.loss_figure(history), width="stretch", key=f"loss-{run.run_id}")
            unconverged = convergence_note(history, status.get("epochs")) if current == "finished" else ""
            if unconverged:
                st.warning(unconverged, icon=":material/warning:")
            if current == "finished" and history.get("loss"):
                with st.expander("Loss curve"):
                    st.plotly_chart(figures.loss_figure(history), width="stretch", key=f"loss-{run.run_id}")


run_list()

st.subheader("Summary")
space = workspace.current()
if space is not None:
    summary = space.dataset.summary()
    # two rows of three, so no label or value is cut off on a 1280 px screen
    workspace.metric_cards(st.columns(3), [
        ("Training images (good)", summary["train_good"], "Good images the model learns from."),
        ("Test good", summary["test_good"], "Good images used to measure false rejects."),
        ("Test defect", summary["test_defect"], "Defect images used to measure escapes."),
    ])
    workspace.metric_cards(st.columns(3), [
        ("Input size", f"{space.detector.input_size} px", "Working resolution: the active detector fits every image to "
         "this size (the long side; the aspect ratio is kept and the short side padded, never stretched)."),
        ("Model", label(space.manifest["model_kind"]), good_for(space.manifest["model_kind"])),
        ("Detector", SHORT_NAMES[space.choice.kind], space.choice.label),
    ])
    patch = getattr(space.detector, "patch_size", None)
    st.caption(f"The active detector sees the images **{'in colour' if space.detector.channels == 3 else 'in grey'}** "
               f"at {space.detector.input_size} px" + (f"; it was trained on random {patch} px patches and judges "
                                                       "whole images." if patch else "."))
    run_decision = getattr(space.detector, "default_decision_", None)
    if run_decision is not None:
        owner = "run" if space.choice.kind == "run" else SHORT_NAMES[space.choice.kind]
        st.caption(f"Default decision of this {owner}: "
                   f"**{run_decision.describe()}**, {run_decision.basis}. Frames that fail the frame check "
                   "are INVALID.")
        digest = space.manifest.get(MANIFEST_DIGEST)
        st.caption(f"Run manifest SHA-256 (the report shows the same, for an audit): {as_code(digest)}" if digest else
                   "This run's manifest carries no SHA-256 of its own (saved before runs were sealed): an edit of "
                   "its decision could not be told. Train it again to seal it.")
    else:
        st.warning("This run was saved before runs carried a default decision and a frame check: no frame is "
                   "checked, and the Threshold page starts from the good test images. Train it again to get both.")
    for note in space.dataset.notes:
        st.info(as_text(note), icon=":material/info:")
    mismatch = workspace.training_data_mismatch(space)
    if mismatch:
        st.warning(mismatch, icon=":material/warning:")
    counts = summary["defect_types"]
    if counts and len(set(counts.values())) == 1:
        st.caption(f"Test defects: {next(iter(counts.values()))} images of each of {len(counts)} types "
                   f"({as_text(', '.join(counts))}).")
    elif counts:
        st.markdown("**Test defect images by type**")
        st.bar_chart(counts, horizontal=True, height=220, x_label="images", y_label="defect type")
    if space.errors:
        with st.expander(f"{len(space.errors)} image(s) could not be read"):
            for message in space.errors.values():
                st.write(as_text(message))
    history = space.manifest.get("history", {})
    if history:
        st.plotly_chart(figures.loss_figure(history), width="stretch")
# the page is drawn: while it is read, the network of the ImageNet detectors is made ready (once per server)
resources.warm_packaged_network_in_background()
