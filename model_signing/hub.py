"""The Hugging Face hub integration's public name: ``from model_signing import hub`` (extra ``modelseal[hub]``).

:func:`sign_and_upload`, :func:`download_and_verify` and :func:`verify_remote` are documented in
:mod:`model_signing.integrations.hub`, which this module re-exports; ``huggingface_hub`` is only imported
when one of them runs.
"""

from __future__ import annotations

from model_signing.integrations.hub import (
    DEFAULT_COMMIT_MESSAGE,
    SIGNATURE_NAME,
    HubUploadResult,
    HubVerifyResult,
    RemoteFileCheck,
    download_and_verify,
    sign_and_upload,
    verify_remote,
)

__all__ = [
    "DEFAULT_COMMIT_MESSAGE",
    "SIGNATURE_NAME",
    "HubUploadResult",
    "HubVerifyResult",
    "RemoteFileCheck",
    "download_and_verify",
    "sign_and_upload",
    "verify_remote",
]
