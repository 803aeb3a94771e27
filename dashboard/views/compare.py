"""Compare: every detector on the same labelled test images — now, and over several seeds in the background."""

import json

import pandas as pd
import streamlit as st

from core.evaluation.compare import AUTOENCODER_SCORE_COLUMN, DETECTOR_LABELS, comparison_rows
from core.detectors import lends_its_encoder
from core.defaults import DEFAULT_EPOCHS
from core.errors import InputError
from core.evaluation.supervised import SUPERVISED_WARNING
from dashboard import figures, jobs, resources, session, workspace
from dashboard.comparison import BANK_ON_ENCODER, model_comparison, quick_comparison, saved_comparison_path
from dashboard.words import as_text, with_dashes

FIGURE_COLUMNS = {"image_auroc": "image AUROC", "image_auprc": "AUPRC", "best_f1": "best F1",
                  "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO", "scoring_images_per_second": "images/s"}


st.title("Compare")
space = workspace.current()
if space is None:
    st.stop()
if not space.has_defects:
    st.info("Comparing detectors needs labelled defect images in the test set; this data set has only good ones.")
    st.stop()

st.subheader("On this data, with the current model")
is_autoencoder = lends_its_encoder(space.manifest["model_kind"], space.manifest.get("parameters", {}).get("patch_size"),
                                   space.manifest.get("channels", 1))
if is_autoencoder:
    st.caption("No training: the chosen model as it is, a memory bank built on its encoder from the good training "
               f"images, and the supervised reference cross-validated on its residual statistics. The autoencoder is "
               f"judged on the `{AUTOENCODER_SCORE_COLUMN}` column, fixed in advance.")
else:
    st.caption("No training: the chosen run as it is, judged on its primary score. A memory bank on the model's "
               "encoder and the supervised reference need an autoencoder run trained on whole grey images; the comparison "
               "below trains them all.")
data, model = session.data_choice(), session.model_choice()
bank_key = space.map_key(BANK_ON_ENCODER)


def show(comparison: dict, results, pending: str | None = None) -> None:
    """The comparison's table, ROC curves and folds in ``results`` (replacing what was there); ``pending`` names a
    row still being computed."""
    with results.container():
        rows = pd.DataFrame([{"detector": name, **{label: values.get(key) for key, label in FIGURE_COLUMNS.items()}}
                             for name, values in comparison["figures"].items()])
        # "—" where a figure does not exist (the supervised reference has no pixel maps), never "None"
        formats = {label: "{:.4f}" for label in FIGURE_COLUMNS.values()} | {"images/s": "{:.0f}"}
        rows = with_dashes(rows, formats)
        st.dataframe(rows.style.format({label: form for label, form in formats.items() if rows[label].dtype != object}),
                     hide_index=True, width="stretch", column_config={
            "pixel AUROC": st.column_config.Column(help="How well the anomaly map marks the defective pixels "
                                                        "themselves."),
            "AUPRO": st.column_config.Column(help="Area under the per-region overlap curve up to 30 % false-positive "
                                                  "pixels: each defect region counts equally, small or large."),
            "images/s": st.column_config.Column(help="Scoring speed on this machine.")})
        if pending:
            st.info(f"{pending}: being built from the good training images (once per data set and model); its row "
                    "and curve follow.", icon=":material/hourglass_top:")
        # a key only for the finished chart: the one shown meanwhile is replaced in the same run
        st.plotly_chart(figures.roc_comparison(comparison["curves"]), width="stretch",
                        key=None if pending else "compare_roc")
        if comparison["folds"]:
            st.warning(SUPERVISED_WARNING, icon=":material/warning:")
            with st.expander("Supervised reference: F1 and accuracy per fold"):
                for name, folds in comparison["folds"].items():
                    st.markdown(f"**{name}**")
                    st.dataframe(folds, hide_index=True, column_config={
                        "f1": st.column_config.NumberColumn("F1", format="%.3f"),
                        "accuracy": st.column_config.NumberColumn(format="%.3f")})


# each step says what it does; the result is kept per data set and model (on disk too), so only a first visit waits,
# and on that visit the model's figures come first while the memory bank on its encoder is built
progress = st.status("Comparing the detectors on this data…")
results = st.empty()
partial = False
try:
    if is_autoencoder and not saved_comparison_path(bank_key).is_file():
        progress.update(label="Step 1 of 2: scoring the test images with the model and cross-validating the "
                              "supervised reference…")
        bank_row = DETECTOR_LABELS[f"memory_bank_{space.manifest['model_kind']}"]
        show(model_comparison(bank_key), results, pending=bank_row)
        partial = True
        progress.update(label="Step 2 of 2: building the memory bank from the good training images (once per data "
                              "set and model) and scoring the test images with it…")
    elif not is_autoencoder:
        progress.update(label="Scoring the test images…")
    quick = quick_comparison(bank_key)
except (ValueError, InputError) as error:
    # the model's figures, when shown, stay: only the memory bank's row is missing
    progress.update(label="The memory bank could not be built" if partial else "The comparison could not be made",
                    state="error")
    if partial:   # no longer "being built"
        show(model_comparison(bank_key), results)
    else:
        results.empty()
    st.error(as_text(error))
    st.stop()
progress.update(label="Comparison ready: every detector on the same test images", state="complete", expanded=False)
show(quick, results)

st.subheader("Trained from scratch, several seeds")
st.caption("Trains or fits every detector for every seed — the NCAE and the CAE with the same settings, a memory "
           "bank on each one's encoder, and each of the others at its own resolution — and cross-validates the "
           "supervised reference: what `python -m core compare` does (about 15 minutes for 3 seeds on the demo). A "
           "detector that cannot fit the data says so in its row. It runs in the background; leave the page and "
           "come back.")
settings = st.columns([1, 1, 2])
seeds = settings[0].number_input("Seeds", 1, 10, 3, key="compare_seeds")
epochs = settings[1].number_input("Maximum epochs", 1, 500, DEFAULT_EPOCHS, key="compare_epochs")
if settings[2].button("Start the comparison", type="primary"):
    jobs.start_comparison(resources.RUNS_ROOT, data.kind, data.location, data.label, int(seeds), int(epochs))


@st.fragment(run_every=3)
def saved_comparisons() -> None:
    found = jobs.comparisons(resources.RUNS_ROOT)
    if not found:
        st.caption("No comparison has been run on this server yet.")
        return
    for job_dir, status in found[:5]:
        title = as_text(f"{job_dir.name} · {status.get('data', '')} · {status.get('seeds')} seeds")
        if status.get("state") != "complete":
            st.info(f"{title}: {as_text(status.get('message', 'starting'))}…", icon=":material/hourglass_top:")
            continue
        report = json.loads((job_dir / jobs.COMPARISON_FILE).read_text(encoding="utf-8"))
        with st.expander(title, expanded=job_dir == found[0][0]):
            st.dataframe(pd.DataFrame(comparison_rows(report)), hide_index=True, width="stretch")
            best = report["detectors"][report["best_label_free"]]["label"]
            st.caption(f"mean ± std over {report['seeds']} seeds on {report['n_good']} good and "
                       f"{report['n_defect']} defect images. Best label-free: **{best}**.")


saved_comparisons()
