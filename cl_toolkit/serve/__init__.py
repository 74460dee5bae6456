"""`clt serve`: the registry's champion (and challenger) behind an OpenAI-compatible API,
every answer logged into the feedback store.

- `protocol`: the wire format, pure: request checks, response and error bodies, the text
  that may be sent while a stream is still growing.
- `engine`: loading a version and answering with transformers (CPU or GPU).
- `arms`: champion and challenger from the registry, reloaded when an alias moves.
- `writer`: the background writer that owns the feedback store (bounded queue, drained on
  shutdown); feedback goes through the same queue, so it always lands after its prediction.
- `server`: the HTTP server (standard library), routes, admission and clean shutdown.
- `upstream`, `relay`: the router (`clt serve LINE --upstream URL`): the same routing, ids,
  tokens and log, the answers forwarded to an OpenAI-compatible upstream (vLLM) that serves
  each version as `LINE-VERSION`; `vllm`: the vLLM command line for the aliases.
- `cli`: the `clt serve` command.

For real GPUs: vLLM behind the router, docs/serving.md.
"""

from cl_toolkit.serve.server import ChatServer, ServeSettings

__all__ = ["ChatServer", "ServeSettings"]
