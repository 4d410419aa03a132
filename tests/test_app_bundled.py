"""Every view on every bundled starter model, as a first-time user meets them: no exception, no error box,
and each view either draws its figures or says in one line why it cannot (a jigsaw model has no classes)."""

import pytest

from apptest import chart_titles, open_page
from vitviz.registry import list_models

BUNDLED = [e.ref for e in list_models() if e.source == "checkpoint" and e.ref.startswith("starter-")]
PAGES = ["home", "patches", "positions", "attention", "attributions", "layers", "jigsaw"]
# What a view says instead of drawing, for a model it cannot use.
CANNOT = {
    ("attributions", "jigsaw"): "has no classification head",
    ("jigsaw", "classifier"): "has no jigsaw head",
}

pytestmark = pytest.mark.skipif(not BUNDLED, reason="no starter models in models/ (python -m training quickstart)")


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("model", BUNDLED or ["none"])
def test_every_view_on_every_starter_model(model, page):
    from vitviz.models import load_model

    kind = "jigsaw" if load_model(model, device="cpu").card.has_jigsaw_head else "classifier"
    at = open_page(page, model=model, sample="chelsea")
    assert not at.exception and not at.error, (at.exception, at.error)
    reason = CANNOT.get((page, kind))
    if reason:
        assert any(reason in info.value for info in at.info), [i.value for i in at.info]
        assert chart_titles(at) == []
    elif page != "home":
        assert chart_titles(at), f"{page} drew nothing for {model}"
