"""The page data the page scripts read (static/js/live.js `pageData()`): one
`<script type="application/json" id="page-data">` element per page.

    {% url 'api:experiment-snapshot' experiment.pk as snapshot %}
    {% page_data page snapshot=snapshot %}

renders the view's `page` dict plus two keys of its own:

- `urls`: the keyword arguments, the addresses the script fetches, each made with `{% url %}` in the
  template, so no script writes a path by hand (an id the script fills in is written as 0);
- `rules`: the engine's rules a script applies, `constraint_limits` (metric -> limit key, from
  `search_engine.rules.CONSTRAINT_LIMITS`) and `static_metrics` (measured before training).
"""

from __future__ import annotations

from django import template
from django.utils.html import json_script

from search_engine.rules import CONSTRAINT_LIMITS, STATIC_METRICS

register = template.Library()

ELEMENT_ID = "page-data"
ENGINE_RULES = {"constraint_limits": CONSTRAINT_LIMITS, "static_metrics": list(STATIC_METRICS)}


@register.simple_tag
def page_data(page=None, **urls):
    """The page's JSON element: `page` (a dict, or nothing) with `urls` and `rules` added."""
    data = dict(page or {})
    clash = {"urls", "rules"} & data.keys()
    if clash:
        raise template.TemplateSyntaxError(f"page_data: the page dict already has {sorted(clash)}")
    data["urls"] = urls
    data["rules"] = ENGINE_RULES
    return json_script(data, ELEMENT_ID)
