"""The CLI of each signing method, one module per method (named as in :data:`model_signing.methods.REGISTRY`).

Each module adds its ``sign <method>`` and ``verify <method>`` subcommands to the groups of
:mod:`model_signing.cli._sign` and :mod:`model_signing.cli._verify` when imported; :mod:`model_signing.cli._app`
imports one per registered method.
"""
