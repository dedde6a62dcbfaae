"""Every rule that can make an endpoint fail or silently misbehave: one registry, one small function per rule.

- ``registry``: ids, titles, why, fix, bad examples; ``view``/``properties_view``: the one view every source is
  read into; ``derive``: the ordered ``auto`` pipeline; ``runner``/``check``: running them.
- one module per concern: ``settings``, ``model_family``, ``hardware``, ``handlers``, ``parallelism``,
  ``precision``, ``capacity``, ``timeouts``, ``scaling``, ``network``, ``endpoint``, ``delivery``, ``properties``,
  ``multi_model``, ``adapters``.

``docs/rules.md`` is generated from the registry: ``python -m lmi_deploy.rules.docs``.
"""
