"""Helpers shared by the serving tests (no tests here): real LoRA adapters on the tiny
model, versions registered from run folders, a server on a free loopback port, and a
small HTTP client (http.client, loopback only, every call with a timeout)."""

from __future__ import annotations

import http.client
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.registry import VersionRecord, open_registry, promote
from cl_toolkit.serve import ChatServer, ServeSettings

__test__ = False
REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "ff"
HOST = "127.0.0.1"
TIMEOUT_S = 30
FAST = {"threads": 1, "max_tokens": 6, "reload_interval": 0.1}


def make_adapter(base: Path, seed: int) -> Path:
    """A real LoRA adapter (q/v projections + a perturbed lm_head copy) beside the base;
    made once per seed and reused. Different seeds give different answers."""
    out = base.parent / f"adapter-{seed}"
    if (out / "adapter_config.json").is_file():
        return out
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    model.save_pretrained(out)
    return out


def register(ws: Path, version: str, adapter: Path, base: Path, parent: str | None = None) -> VersionRecord:
    """A run folder as training leaves it (adapter included), registered."""
    run = ws / "runs" / f"{MODEL}-{version}"
    shutil.copytree(adapter, run / "adapter")
    (run / "data").mkdir()
    for name, text in {"recipe.yml": f"model: {MODEL}\nversion: {version}\n", "axolotl.yml": "{}\n",
                       "manifest.json": "{}\n", "data/new.jsonl": ""}.items():
        (run / name).write_text(text)
    with open_registry(ws) as reg:
        return reg.register(VersionRecord(
            model=MODEL, version=version, parent=parent, strategy="continued_lora" if parent else "initial_lora",
            base_model=str(base), recipe_sha256="r" * 64, data_sha256="d" * 64, run_dir=str(run),
            adapter_dir=str(run / "adapter")))


def setup_line(ws: Path, base: Path, *, challenger: bool = True) -> None:
    """ff 1.0.0 (champion first), 1.1.0 (champion now) and 1.2.0 (the challenger): three
    different adapters. A rollback goes back to 1.0.0."""
    register(ws, "1.0.0", make_adapter(base, 1), base)
    register(ws, "1.1.0", make_adapter(base, 2), base, parent="1.0.0")
    register(ws, "1.2.0", make_adapter(base, 3), base, parent="1.1.0")
    with open_registry(ws) as reg:
        promote(reg, MODEL, "1.0.0", reason="first release")
        promote(reg, MODEL, "1.1.0", reason="second release", force=True)
        if challenger:
            promote(reg, MODEL, "1.2.0", to="challenger", reason="try it")


def start(ws: Path, **settings) -> ChatServer:
    """A server for MODEL on a free loopback port."""
    options = {**FAST, "port": 0, "host": HOST, "workspace": ws, **settings}
    return ChatServer(ServeSettings(model=MODEL, **options)).start()


@dataclass
class Reply:
    status: int
    headers: dict
    raw: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.raw)

    def events(self) -> list:
        """The `data:` payloads of an SSE body, JSON decoded except [DONE]."""
        out = []
        for line in self.raw.decode().split("\n"):
            if line.startswith("data: "):
                data = line[len("data: "):]
                out.append(data if data == "[DONE]" else json.loads(data))
        return out


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)

    def request(self, method: str, path: str, body: dict | bytes | None = None,
                headers: dict | None = None) -> Reply:
        data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
        heads = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body=data, headers=heads)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, ConnectionError):
            self.conn.close()
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)

    def chat(self, text: str = "What is a hose?", *, rid: str | None = None, **fields) -> Reply:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], **fields}
        return self.request("POST", "/v1/chat/completions", body, {"X-Request-Id": rid} if rid else None)

    def feedback(self, **fields) -> Reply:
        return self.request("POST", "/v1/feedback", fields)

    def close(self) -> None:
        self.conn.close()
