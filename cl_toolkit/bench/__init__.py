"""Benchmarks that train through the real toolkit path (`clt bench ...`)."""
