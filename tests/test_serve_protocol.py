"""The wire format without a server: request checks and their error fields, request ids,
feedback bodies, streamed text that is always a real piece of the final answer, and the
CLI's defaults coming from ServeSettings."""

from __future__ import annotations

import dataclasses
import random

import click
import pytest

from cl_toolkit.cli.serve import cli as serve_cli
from cl_toolkit.serve import ChatServer, ServeSettings
from cl_toolkit.serve.protocol import (
    ApiError,
    TextCutter,
    client_reference,
    new_request_id,
    parse_chat,
    parse_feedback,
    parse_json,
)

USER = [{"role": "user", "content": "hi"}]


def chat(**body):
    return parse_chat({"model": "ff", "messages": USER, **body}, model="ff", max_tokens=16)


def test_a_minimal_request_gets_greedy_defaults_and_the_token_cap():
    req = chat()
    assert req.messages == ({"role": "user", "content": "hi"},)
    assert (req.max_tokens, req.temperature, req.stream, req.stop) == (16, 0.0, False, ())
    assert chat(max_tokens=4).max_tokens == 4
    assert chat(max_tokens=10_000).max_tokens == 16  # more than the cap gets the cap
    assert chat(max_completion_tokens=3, max_tokens=9).max_tokens == 3
    assert parse_chat({"messages": USER}, model="ff", max_tokens=8).max_tokens == 8  # model may be left out


def test_content_parts_developer_role_and_stream_options():
    req = chat(messages=[{"role": "developer", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]}],
               stream=True, stream_options={"include_usage": True}, stop="\n", metadata={"domain": "hose"},
               presence_penalty=0, seed=3)  # fields clients send by default are ignored
    assert req.messages[0]["role"] == "system" and req.last_user_message == "a b"
    assert req.stream and req.include_usage and req.stop == ("\n",) and req.metadata == {"domain": "hose"}


@pytest.mark.parametrize("body, status, param", [
    ({"messages": []}, 400, "messages"),
    ({"messages": "hi"}, 400, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "system", "content": "only a system turn"}]}, 400, "messages"),
    ({"model": "other"}, 404, "model"),
    ({"n": 2}, 400, "n"),
    ({"tools": [{"type": "function"}]}, 400, "tools"),
    ({"logprobs": True}, 400, "logprobs"),
    ({"response_format": {"type": "json_object"}}, 400, "response_format"),
    ({"temperature": 3}, 400, "temperature"),
    ({"temperature": "hot"}, 400, "temperature"),
    ({"top_p": 1.5}, 400, "top_p"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 2.5}, 400, "max_tokens"),
    ({"max_tokens": True}, 400, "max_tokens"),
    ({"stream": "yes"}, 400, "stream"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"stop": [""]}, 400, "stop"),
    ({"user": 7}, 400, "user"),
    ({"metadata": {"k": 1}}, 400, "metadata"),
])
def test_bad_requests_name_the_field(body, status, param):
    with pytest.raises(ApiError) as e:
        chat(**body)
    assert (e.value.status, e.value.param) == (status, param)
    err = e.value.body()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    if status == 404:
        assert err["code"] == "model_not_found"


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b"null"])
def test_a_body_must_be_a_json_object(raw):
    with pytest.raises(ApiError) as e:
        parse_json(raw)
    assert e.value.status == 400


def test_deep_json_nesting_is_a_400_not_a_500():
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(ApiError) as e:  # RecursionError inside json, caught
            parse_json(raw)
        assert (e.value.status, e.value.code) == (400, "json_too_deep")
    deep = b'{"messages": ' + b"[" * 40 + b"]" * 40 + b"}"  # parses, but deeper than any request needs
    with pytest.raises(ApiError) as e:
        parse_json(deep)
    assert e.value.code == "json_too_deep"
    assert parse_json(b'{"messages": ' + b"[" * 30 + b"]" * 30 + b"}")["messages"]


def test_request_ids_are_always_made_and_client_ids_are_only_references():
    made = new_request_id()
    assert made.startswith("chatcmpl-") and made != new_request_id()
    assert client_reference("h-1") == "h-1" and client_reference(None) is None
    for bad in ("", "a b", "x\r\nSet-Cookie: y", "é", "x" * 257):
        with pytest.raises(ApiError):
            client_reference(bad)


def test_feedback_bodies():
    assert parse_feedback({"request_id": "r1", "thumbs": "up", "feedback_token": "t"}) == \
        ("r1", "t", {"rating": None, "thumbs": 1, "correction": None, "notes": None})
    assert parse_feedback({"id": "r1", "thumbs": -1, "correction": "c"})[2]["thumbs"] == -1
    assert parse_feedback({"request_id": "r1", "rating": 2}, "from-header")[1:] == \
        ("from-header", {"rating": 2, "thumbs": None, "correction": None, "notes": None})
    assert parse_feedback({"request_id": "r1", "rating": 2})[1] is None
    for bad in ({"thumbs": 1}, {"request_id": 5, "thumbs": 1}, {"request_id": "r1"},
                {"request_id": "r1", "rating": 2, "feedback_token": 7}):
        with pytest.raises(ApiError) as e:
            parse_feedback(bad)
        assert e.value.status == 400


def _stream(text: str, stop: tuple[str, ...], rng: random.Random) -> tuple[list[str], str]:
    cutter, pieces, i = TextCutter(stop), [], 0
    while i < len(text):
        i += rng.randint(1, 4)
        pieces.append(cutter.feed(text[:i]))
    last, final = cutter.finish(text)
    return [*pieces, last], final


@pytest.mark.parametrize("text, stop, final", [
    ("  the answer is 42 \n", (), "the answer is 42"),
    ("one two\nthree", ("\n",), "one two"),
    ("abc STOP def", ("STOP", "XYZ"), "abc"),
    ("abc ST", ("STOP",), "abc ST"),  # a stop's start at the very end is kept once complete
    ("\n\nlead", (), "lead"),
    (" post office box", (" ",), "post"),  # stop strings apply to the answer the client sees
    ("\n\nlead\nnext", ("\n",), "lead"),
    ("", (), ""),
])
def test_streamed_pieces_add_up_to_the_final_answer(text, stop, final):
    rng = random.Random(0)
    for _ in range(20):
        pieces, got = _stream(text, stop, rng)
        assert got == final and "".join(pieces) == final


def test_streaming_never_sends_part_of_a_stop_string():
    cutter = TextCutter(("<end>",))
    sent = cutter.feed("hello <en")
    assert sent == "hello" and "<" not in sent
    assert cutter.feed("hello <end> more") == ""
    assert cutter.finish("hello <end> more") == ("", "hello") and cutter.stopped


def test_cli_defaults_are_the_settings_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(ServeSettings)}
    options = [p for p in serve_cli.params if isinstance(p, click.Option) and p.name != "print_vllm"]  # a mode
    assert options
    for p in options:
        assert p.name in defaults, p.name
        assert p.default == defaults[p.name] or (p.default is None and defaults[p.name] is None), p.name


def test_admission_refuses_when_full_and_while_closing(tmp_path):
    server = ChatServer(ServeSettings(model="ff", max_pending=1, workspace=tmp_path))
    with server.admit():
        with pytest.raises(ApiError) as e, server.admit():
            pass
        assert e.value.status == 429 and e.value.type == "rate_limit_error"
    assert server.inflight == 0
    server.closing = True
    with pytest.raises(ApiError) as e, server.admit():
        pass
    assert e.value.status == 503
