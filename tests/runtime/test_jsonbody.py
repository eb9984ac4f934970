"""Reading a request body's top-level members from its bytes (halogen/runtime/forward/jsonbody.py), as
gjson.GetBytes reads a request's model in extractContext (internal/swaputil/http.go, llama-swap),
and the limits a body must keep before it is parsed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halogen.runtime.base.errors import BadRequest, TooLarge
from halogen.runtime.forward import jsonbody
from halogen.runtime.forward.carried import Carried


def model_of(body: bytes) -> Any:
    found = jsonbody.run(jsonbody.survey(body, ["model"]))
    span = found.members.get("model")
    return None if span is None else jsonbody.member_text(body, span)


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b'{"model":"a"}', "a"),
        (b' \r\n{ "model" :\t"a" } \n', "a"),
        (b'{"messages":[{"role":"user","content":"hi"}],"model":"a"}', "a"),
        # Only the top level counts: a "model" inside another value is not the request's.
        (b'{"x":{"model":"inner"},"model":"a"}', "a"),
        (b'{"x":[{"model":"inner"}]}', None),
        (b'{"x":"\\"model\\":\\"inner\\"","model":"a"}', "a"),
        # gjson takes the first of duplicate keys (json.loads the last).
        (b'{"model":"first","model":"last"}', "first"),
        # A key written with escapes is the same key.
        (b'{"mod\\u0065l":"a"}', "a"),
        (b'{"model":"caf\\u00e9 \\ud83d\\ude00"}', "caf\u00e9 \U0001f600"),
        (b'{"model":"qwen3\\/8b"}', "qwen3/8b"),
        (b'{"model":"a\\\\"}', "a\\"),
        (b'{"x":"ends in a backslash\\\\","model":"a"}', "a"),
        (b'{"x":"]}{[","model":"a"}', "a"),
        (b'{"x":[[[1],{"y":[]}],"]"],"model":"a"}', "a"),
        ('{"x":"\u00fc","model":"\u00e9"}'.encode(), "\u00e9"),
        # A value that is not a string names no model by text.
        (b'{"model":12}', None),
        (b'{"model":null}', None),
        (b'{"model":{"name":"a"}}', None),
        (b'{"models":"a","Model":"b"}', None),
        (b"{}", None),
    ],
)
def test_the_model_is_read_from_the_top_level_of_the_bytes_as_gjson_reads_it(body: bytes, model: Any) -> None:
    assert model_of(body) == model


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"model=a", "not valid JSON"),
        (b'["model","a"]', "must be a JSON object"),
        (b'"model"', "must be a JSON object"),
        (b"12", "must be a JSON object"),
        (b'{"model":"a"', "not valid JSON"),
        (b'{"model":"a', "a string never ends"),
        (b'{"model":"a\\"}', "a string never ends"),
        (b'{"x":[1,2', "ends inside a value"),
        (b'{"model" "a"}', "not valid JSON"),
        (b'{"model":"a",}', "not valid JSON"),
        (b'{"model":"a"} x', "not valid JSON"),
        (b'{"model":}', "not valid JSON"),
    ],
)
def test_a_body_that_is_not_one_json_object_is_unreadable_with_the_reason(body: bytes, message: str) -> None:
    with pytest.raises(jsonbody.Unreadable, match=message):
        model_of(body)


def test_depth_past_the_limit_is_refused_and_wide_nesting_is_not() -> None:
    deep = b'{"model":"a","x":' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(jsonbody.TooDeep, match="nests deeper than 256 levels"):
        model_of(deep)
    at_limit = b'{"model":"a","x":' + b"[" * 255 + b"]" * 255 + b"}"
    assert model_of(at_limit) == "a"
    assert model_of(b'{"x":[' + b"[[1]]," * 10_000 + b'0],"model":"a"}') == "a"


def test_a_renamed_body_changes_only_the_model_s_value() -> None:
    body = b'{ "messages" : [ {"model":"inner"} ],\n "model" : "a" , "stream":true }'
    carried = Carried.read("POST", "application/json", body, "", json=True)
    renamed = carried.naming('caf\u00e9/"b"')
    assert renamed.body == body.replace(b'"a"', '"caf\u00e9/\\"b\\""'.encode())
    assert json.loads(renamed.body)["model"] == 'caf\u00e9/"b"'
    assert carried.streams and renamed.naming("a").body == body


def test_a_wide_body_is_walked_in_slices_each_within_the_slice_s_bytes() -> None:
    wide = b'{"a":[' + b"{}," * 1_000_000 + b'{}],"model":"a"}'
    walk = jsonbody.survey(wide, ["model"])
    pauses = 0
    try:
        while True:
            next(walk)
            pauses += 1
    except StopIteration as done:
        found: jsonbody.Survey = done.value
    assert jsonbody.member_text(wide, found.members["model"]) == "a"
    # One pause per slice of the body at least: the event loop gets a turn between slices.
    assert pauses >= len(wide) // (2 * jsonbody.SLICE), pauses


def test_a_body_is_parsed_only_within_the_element_limit_with_413_past_it() -> None:
    fits = json.dumps({"model": "a", "x": [{}] * 1000}).encode()
    assert jsonbody.parse(fits) == json.loads(fits)
    wide = b'{"model":"a","x":[' + b"{}," * jsonbody.MAX_ELEMENTS + b"{}]}"
    with pytest.raises(TooLarge, match="more than 16384 elements"):
        jsonbody.parse(wide)
    with pytest.raises(BadRequest, match="nests deeper"):
        jsonbody.parse(b'{"x":' + b"[" * 300 + b"]" * 300 + b"}")
    with pytest.raises(BadRequest, match="not valid JSON"):
        jsonbody.parse(b'{"x":tru}')  # the walk lets a bad literal pass; json.loads does not


# --- any JSON object --------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["model", "stream", "mode", "model ", "Model", "m\u00f6del"]) | st.text(max_size=6)
objects = st.dictionaries(keys, values, max_size=6)
dumps = st.sampled_from(
    [
        {},
        {"separators": (",", ":")},
        {"ensure_ascii": False},
        {"indent": 2},
        {"indent": "\t", "ensure_ascii": False},
    ]
)


@settings(max_examples=400, deadline=None)
@given(objects, dumps)
def test_for_any_json_object_the_walk_agrees_with_json_loads_on_the_top_level_model(
    data: dict[str, Any], options: dict[str, Any]
) -> None:
    body = json.dumps(data, **options).encode()
    expected = data.get("model")
    assert model_of(body) == (expected if isinstance(expected, str) else None)
    found = jsonbody.run(jsonbody.survey(body, ["model", "stream"]))
    for name, (start, end) in found.members.items():
        assert json.loads(body[start:end]) == data[name]
    if "model" in data:
        renamed = Carried.read("POST", "application/json", body, "", json=True).naming("x")
        assert json.loads(renamed.body) == {**data, "model": "x"}
