"""The benchmark library, installed with the plugin as `pytest_lmeval_evals`."""
