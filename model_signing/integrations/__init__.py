"""L8: edges to outside systems (the Hugging Face hub: :mod:`.hub`), built on the signing and verifying pipelines.

Each integration imports its outside client only inside the functions that use it, so that the package and
the CLI start without them; a missing client is a :class:`~model_signing.errors.MissingExtraError` naming
the ``modelseal[...]`` extra to install.
"""
