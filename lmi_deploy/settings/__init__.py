"""The deployment config's parts, by what they hold: its fields by topic (:mod:`.model`, :mod:`.endpoint`,
:mod:`.operations`, each layer extending the one before so the fields keep their order), the values derived from
them (:mod:`.derived`), text checks shared by the fields (:mod:`.values`) and the one-line description of a bad
value (:mod:`.describe`). :class:`lmi_deploy.config.DeploymentConfig` composes them; import from there.
"""
