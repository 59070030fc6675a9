"""console.render: autoescaped templates, the flash message shown once."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from authproxy.console.render import template_environment


def test_values_are_escaped() -> None:
    """A key name with markup is text on the page, not markup."""
    html = (
        template_environment()
        .from_string("<td>{{ name }}</td>")
        .render(name='<script>alert("x")</script>')
    )
    assert html == "<td>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>"


def test_a_missing_value_is_an_error_not_an_empty_cell() -> None:
    """StrictUndefined: a template bug shows up in tests."""
    with pytest.raises(UndefinedError):
        template_environment().from_string("{{ nope }}").render()


def test_every_template_compiles() -> None:
    """Each file under templates/ parses."""
    env = template_environment()
    names = env.list_templates()
    assert "base.html" in names
    for name in names:
        env.get_template(name)
