"""lmi-deploy core: the deployment config, the catalogs it is checked against, and rendering.

Everything here is plain Python (no CDK), shared by ``app.py``, the scripts and the tests.
"""
