"""Answering with transformers: a registered version loaded once (base + adapter merged,
by evaluation's load_model), one generation at a time per loaded model, greedy unless the
request asks for a temperature.

A streamed answer is generated in its own thread and read through transformers'
TextIteratorStreamer, so the pieces a client receives are produced as the model decodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from cl_toolkit.evaluation.generate import LoadedModel, load_model
from cl_toolkit.registry import VersionRecord
from cl_toolkit.serve.protocol import ApiError, ChatRequest, TextCutter

STREAM_TIMEOUT_S = 600  # a streamer never waits longer than this for its next piece


@dataclass
class Served:
    """One loaded version. The lock runs one generation at a time on it: generate() on a
    shared model is not documented as thread-safe, and on CPU parallel calls only contend."""

    version: str
    lm: LoadedModel
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Completion:
    text: str  # the answer as sent: stripped, cut before a stop string
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length
    meta: dict = field(default_factory=dict)  # more for the log (a router: the upstream's id)


def load_version(rec: VersionRecord, device: str | None = None) -> Served:
    """Load a registered version (its adapter merged into its base) for serving."""
    return Served(rec.version, load_model(rec.base_model, rec.adapter_dir, device))


def encode(lm: LoadedModel, req: ChatRequest) -> list[int]:
    """The conversation as prompt token ids, the chat template applied; refuses a prompt
    that leaves no room for the answer in the model's context."""
    tok = lm.tokenizer
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(list(req.messages), tokenize=False, add_generation_prompt=True)
    else:
        text = "\n".join(m["content"] for m in req.messages)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if limit and len(ids) + req.max_tokens > limit:
        raise ApiError(400, f"This model's maximum context length is {limit} tokens; the messages have "
                            f"{len(ids)} and max_tokens is {req.max_tokens}.",
                       param="messages", code="context_length_exceeded")
    return ids


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids = lm.model.generation_config.eos_token_id
    ids = set(ids) if isinstance(ids, list) else {ids}
    return sorted(i for i in ids | {lm.tokenizer.eos_token_id} if i is not None)


def _generate(served: Served, prompt: list[int], req: ChatRequest, streamer=None) -> list[int]:
    import torch

    lm = served.lm
    ids = torch.tensor([prompt], device=lm.device)
    if req.temperature > 0:
        sampling = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p}
    else:
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    stops = {"stop_strings": list(req.stop), "tokenizer": lm.tokenizer} if req.stop else {}
    with served.lock, torch.no_grad():
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                max_new_tokens=req.max_tokens, eos_token_id=_eos_ids(lm),
                                pad_token_id=lm.tokenizer.pad_token_id, streamer=streamer,
                                **sampling, **stops)
    return out[0, len(prompt):].tolist()


def _finish_reason(lm: LoadedModel, new: list[int], req: ChatRequest, cutter: TextCutter) -> str:
    if cutter.stopped or (new and new[-1] in _eos_ids(lm)) or len(new) < req.max_tokens:
        return "stop"
    return "length"


def complete(served: Served, prompt: list[int], req: ChatRequest) -> Completion:
    """The whole answer at once."""
    new = _generate(served, prompt, req)
    cutter = TextCutter(req.stop)
    _, text = cutter.finish(served.lm.tokenizer.decode(new, skip_special_tokens=True))
    return Completion(text, len(prompt), len(new), _finish_reason(served.lm, new, req, cutter))


class Stream:
    """An answer generated in its own thread: iterate `pieces()` for what to send, then
    `result()` for the Completion (it waits for the generation to end)."""

    def __init__(self, served: Served, prompt: list[int], req: ChatRequest):
        from transformers import TextIteratorStreamer

        self.served, self.prompt, self.req = served, prompt, req
        self.streamer = TextIteratorStreamer(served.lm.tokenizer, skip_prompt=True, timeout=STREAM_TIMEOUT_S,
                                             skip_special_tokens=True)
        self.cutter = TextCutter(req.stop)
        self.text, self.final = "", None
        self._new: list[int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clt-serve-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._new = _generate(self.served, self.prompt, self.req, streamer=self.streamer)
        except BaseException as e:  # handed to result(); end() unblocks the reader
            self._error = e
            self.streamer.end()

    def pieces(self) -> Iterator[str]:
        """Pieces of the answer as they are decoded; their concatenation is the answer."""
        for text in self.streamer:
            self.text += text
            if piece := self.cutter.feed(self.text):
                yield piece
        last, self.final = self.cutter.finish(self.text)
        if last:
            yield last

    def result(self) -> Completion:
        """Wait for the generation; its Completion, whose text is what pieces() sent."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self.final is None:  # the reader stopped early (client gone): the whole answer
            for _ in self.pieces():
                pass
        return Completion(self.final, len(self.prompt), len(self._new),
                          _finish_reason(self.served.lm, self._new, self.req, self.cutter))
