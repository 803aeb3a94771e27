"""Review: the corrections marked on the pages, with undo; retrain with them; before and after, side by side."""

from pathlib import Path

import streamlit as st

from core.evaluation.before_after import compare_runs, convergence_note
from core.runs.corrections import corrected_dataset, load_corrections
from core.runs.store import FINISHED_STATES, list_runs, read_status
from dashboard import figures, jobs, resources, session, workspace
from dashboard.words import as_code, as_text, percent

st.title("Review")
space = workspace.current()
if space is None:
    st.stop()
corrections = space.corrections
if corrections is None:
    st.stop()   # the workspace has said why the corrections cannot be read

st.caption("Open any image's **Details** (Threshold's misclassified images, Residuals, Statistics) and mark it "
           "*actually good*, *actually defect* (with its type) or *exclude*. Every page's numbers follow the marks "
           "at once. They are kept beside the runs, never in your data folder.")

if not corrections.entries:
    st.info("No corrections yet for this model on this data.")
else:
    scores = space.table.set_index("path")
    column = workspace.primary_column(space)
    st.subheader(f"Corrections: {len(corrections.entries)}")
    for image, entry in sorted(corrections.entries.items(), key=lambda item: item[1]["marked"], reverse=True):
        what, when, undo = st.columns([5, 2, 1])
        score = f" · {column} {scores.loc[image, column]:.4g}" if image in scores.index else ""
        what.markdown(f"{as_code(image)} — marked **{entry['action']}**"
                      + (f" ({as_text(entry['defect_type'])})" if entry.get("defect_type") else "") + score)
        when.caption(entry["marked"])
        if undo.button("Undo", key=f"undo-{image}", icon=":material/undo:"):
            corrections.undo(image)
            st.rerun()

    st.subheader("Retrain with the corrections")
    moved, excluded = len(corrections.of("good")), len(corrections.of("exclude"))
    st.caption(f"A new run like this one, trained in the background: the {moved} images marked good join its "
               f"training images, the {excluded} excluded ones are left out. This run is not changed. Both are then "
               "judged on the same test images (those marked good are no longer among them), each at its own "
               "default decision.")
    epochs = int(space.manifest.get("parameters", {}).get("epochs", 0) or 0)
    chosen_epochs = st.number_input("Maximum epochs", 1, 500, epochs, key="retrain_epochs") if epochs else None
    mine = st.session_state.get("retraining")
    busy = bool(mine) and jobs.is_alive(mine)
    if st.button("Retrain with corrections", type="primary", disabled=busy, icon=":material/model_training:"):
        data = session.data_choice()
        try:
            run_dir = jobs.start_retraining(resources.RUNS_ROOT, data.kind, data.location, space.manifest,
                                            corrections.path, chosen_epochs)
            st.session_state["retraining"] = run_dir.name
            st.session_state["retraining_from"] = session.model_choice().path
        except jobs.TooManyJobs as error:
            st.warning(as_text(error))


@st.cache_resource(show_spinner="Judging both runs on the same test images…", max_entries=4)
def before_and_after(before_path: str, before_sha: str, after_path: str, after_sha: str, data_kind: str,
                     data_location: str, corrections_path: str, corrections_digest: str):
    before = resources.load_detector(before_path, before_sha)
    after = resources.load_detector(after_path, after_sha)
    corrected = corrected_dataset(resources.load_dataset(data_kind, data_location),
                                  load_corrections(Path(corrections_path)))
    return compare_runs(before, after, corrected)


def latest_retraining() -> str | None:
    """The newest retraining of the current run, so that a reload (which forgets the session) finds it again."""
    sha = space.manifest["model_sha256"]
    found = [run.run_id for run in list_runs(resources.RUNS_ROOT, usable_only=False)
             if run.status.get("retrained_from") == sha]
    return found[0] if found else None


@st.fragment(run_every=2)
def retraining() -> None:
    # looked for once per browser session (a reload starts a new one), not on every 2-second tick
    if st.session_state.get("retraining") is None and "retraining_dismissed" not in st.session_state and \
            not st.session_state.get("retraining_searched"):
        st.session_state["retraining_searched"] = True
        st.session_state["retraining"] = latest_retraining()
        st.session_state["retraining_from"] = session.model_choice().path
    run_id = st.session_state.get("retraining")
    if not run_id:
        return
    run_dir = Path(resources.RUNS_ROOT) / run_id
    status = read_status(run_dir)
    state = status.get("state", "queued")
    if state not in FINISHED_STATES:
        progress = status.get("epoch", 0) / max(status.get("epochs") or 1, 1)
        st.progress(min(progress, 1.0), text=f"Retraining {run_id}: {state}, epoch {status.get('epoch', 0)}/"
                                             f"{status.get('epochs', '?')}")
        if st.button("Cancel", key="cancel-retraining", icon=":material/stop:"):
            jobs.cancel(run_dir)
        return
    if state != "complete":
        st.error(f"Retraining {as_code(run_id)} ended {state}: {as_text(status.get('message', ''))}")
        return
    from core.runs.bundles import read_manifest

    data = session.data_choice()
    before_path = st.session_state.get("retraining_from", session.model_choice().path)
    # the hashes only key the cached comparison (loading the runs checks them): not re-hashed every tick
    before_manifest, after_manifest = read_manifest(before_path, reuse_digests=True), \
        read_manifest(run_dir, reuse_digests=True)
    marks = load_corrections(Path(status.get("corrections_path", corrections.path)))
    result = before_and_after(before_path, before_manifest["model_sha256"], str(run_dir),
                              after_manifest["model_sha256"], data.kind, data.location, str(marks.path),
                              str(sorted(marks.entries.items())))
    st.subheader("Before and after")
    st.caption(f"Both runs on the same {result.images} test images, each at its own default decision.")
    st.dataframe(before_after_cards(result.cards), width="stretch", key="before_after_cards")
    if result.cards.loc[["precision", "F1"]].isna().to_numpy().any():
        st.caption("—: a run that rejects no part has no precision and no F1.")
    unconverged = convergence_note(status.get("history") or after_manifest.get("history") or {}, status.get("epochs"))
    if unconverged:
        st.warning(f"The retrained run: {unconverged}", icon=":material/warning:")
    if result.curves:
        st.plotly_chart(figures.roc_comparison(result.curves), width="stretch", key="before_after_roc")
    st.markdown(f"**Images whose verdict changed: {len(result.changed)}**")
    if len(result.changed):
        st.dataframe(result.changed, hide_index=True, width="stretch", key="before_after_changed")
    confirmed = True
    if result.worse:
        st.error("**The retrained run is worse than the one in use.**  \n" + "  \n".join(
            sentence[0].upper() + sentence[1:] for sentence in result.worse.values()), icon=":material/trending_down:")
        names = list(result.worse)
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        confirmed = st.checkbox(f"Use it anyway: I accept that its {listed} get{'s' if len(names) == 1 else ''} worse",
                                key="confirm-worse")
    if st.button("Use the retrained run", key="use-retrained", icon=":material/published_with_changes:",
                 disabled=not confirmed,
                 help=None if confirmed else "The retrained run is worse: confirm above to use it anyway."):
        session.choose_model(session.ModelChoice(str(run_dir), run_dir.name))
        st.session_state["retraining"] = None
        st.session_state["retraining_dismissed"] = True
        st.rerun(scope="app")


def before_after_cards(cards):
    """The figures as text: three decimals for AUROC and F1, significant digits for the threshold, percentages
    for the rates, and "—" where a figure does not exist (never "nan")."""
    shown = cards.copy()
    for name in ("before", "after"):
        shown[name] = [value if isinstance(value, str) else "—" if value != value
                       else f"{value:.3f}" if label in ("image AUROC", "F1")
                       else f"{value:.6g}" if label == "threshold" else percent(value)
                       for label, value in zip(shown.index, shown[name])]
    return shown

retraining()
