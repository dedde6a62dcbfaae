"""The code of lmi-deploy's own handlers, shipped in each code tarball as ``lmi_handlers/`` beside ``model.py``.

The rendered ``model.py`` holds only what varies per deployment and imports the rest from here. Inside the
container only the tarball's folder is on ``sys.path``, so these modules import each other relatively and import
nothing of lmi_deploy, pydantic, jinja2 or boto3 at module level; they run on the oldest container Python (3.9).
"""
