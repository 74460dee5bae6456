"""cl_toolkit: keep a domain LLM current, quarter after quarter, on top of Axolotl."""

__version__ = "0.1.0"
