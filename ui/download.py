"""A pretrained model whose weights are not on this machine yet: its size, a Download button, progress."""

from __future__ import annotations

import streamlit as st

from vitviz.hub import DownloadError, WeightsNotDownloaded, download_weights, partial_bytes


def offer_download(missing: WeightsNotDownloaded) -> None:
    """Say what is missing and offer to fetch it; a finished download reruns the page with the model.

    A download that broke off earlier is resumed, and the page says how much of it is already here.
    """
    st.warning(str(missing))
    size = f" ({missing.download_mb} MB)" if missing.download_mb else ""
    kept = partial_bytes(missing.name)
    if kept:
        st.caption(f"{kept / 1e6:.1f} MB of it came before an earlier download broke off: the download resumes "
                   "from there.")
    verb = "Resume the download of" if kept else "Download"
    if not st.button(f"{verb} {missing.name}{size}", key=f"download-{missing.name}", type="primary",
                     icon=":material/download:"):
        return
    bar = st.progress(0.0, text="Asking the Hugging Face Hub…")

    def progress(done: int, total: int | None) -> None:
        if total:
            bar.progress(min(1.0, done / total), text=f"{done / 1e6:.0f} of {total / 1e6:.0f} MB")

    try:
        path = download_weights(missing.name, progress)
    except DownloadError as e:
        bar.empty()
        st.error(str(e))
        return
    bar.progress(1.0, text=f"Downloaded to {path.parent}")
    st.rerun()
