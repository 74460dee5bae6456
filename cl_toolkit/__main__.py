from cl_toolkit.cli import run

run()
