"""Where a request names its model (halogen/runtime/forward/carried.py), after extractContext and
ReplaceRequestModel in internal/swaputil/http.go (llama-swap) and its http_test.go."""

from __future__ import annotations

import pytest

from halogen.runtime.base.errors import BadRequest
from halogen.runtime.forward.carried import Carried, upstream_path

FORM_TYPE = "multipart/form-data; boundary=XyZ"
FORM = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n"
    b"RIFF\x00model\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="model"\r\n\r\n'
    b"whisper\r\n"
    b"--XyZ--\r\n"
)


# TestStripVersionPrefix and TestStripAudioAPIPrefix, internal/server/extras_test.go (llama-swap).
@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/v/chat/completions", "/chat/completions"),
        ("/v/messages/count_tokens", "/messages/count_tokens"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/audioapi/v1/tasks/run", "/v1/tasks/run"),
        ("/props", "/props"),
        ("/video", "/video"),
    ],
)
def test_the_upstream_path_drops_the_versionless_and_audio_api_prefixes(path: str, upstream: str) -> None:
    assert upstream_path(path) == upstream


def test_a_json_body_names_its_model_and_is_renamed_with_every_other_key_kept() -> None:
    carried = Carried.read("POST", "application/json", b'{"model":"a","x":[1,2]}', "s=1", json=True)
    assert (carried.asked, carried.data) == ("a", {"model": "a", "x": [1, 2]})
    renamed = carried.naming("b")
    assert (renamed.asked, renamed.body, renamed.query) == ("b", b'{"model":"b","x":[1,2]}', "s=1")
    assert renamed.path_qs("/v1/chat/completions") == "/v1/chat/completions?s=1"


def test_a_body_that_must_be_json_and_is_not_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        Carried.read("POST", "text/plain", b"model=a", "", json=True)
    # Where JSON is not required (the /upstream route), such a body names no model.
    assert Carried.read("POST", "text/plain", b"model=a", "", json=False).asked is None
    # A body that says it is JSON and is not names no model there either (gjson reads it so).
    assert Carried.read("POST", "application/json", b"{not json", "", json=False).asked is None


def test_a_form_names_its_model_in_its_field_and_only_that_field_changes() -> None:
    carried = Carried.read("POST", FORM_TYPE, FORM, "", json=True)
    assert carried.asked == "whisper" and carried.data is None
    renamed = carried.naming("large-v3")
    assert renamed.body == FORM.replace(b"\r\nwhisper\r\n", b"\r\nlarge-v3\r\n")
    assert renamed.naming("whisper").body == FORM


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_get_names_its_model_in_the_query_the_first_one_as_go_reads_it(method: str) -> None:
    carried = Carried.read(method, "", b"", "lang=en&model=a&model=b", json=True)
    assert carried.asked == "a"
    renamed = carried.naming("peer-a")
    assert renamed.query == "lang=en&model=peer-a" and renamed.body == b""
    assert Carried.read(method, "", b"", "lang=en", json=True).asked is None
    assert Carried.read(method, "", b"", "", json=True).path_qs("/props") == "/props"
