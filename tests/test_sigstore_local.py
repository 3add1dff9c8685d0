"""The unmodified sigstore client against the local Sigstore instance, over 127.0.0.1.

Sign (hashedrekord and DSSE) and verify with identity policies; every tampering the client must catch
(SET, checkpoint signature, inclusion proof, timestamp, foreign instance) is made to a real bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigstore.dsse import DigestSet, StatementBuilder, Subject
from sigstore.errors import VerificationError
from sigstore.models import Bundle, ClientTrustConfig, InvalidBundle
from sigstore.oidc import IdentityToken, detect_credential
from sigstore.sign import SigningContext
from sigstore.verify import Verifier, policy

from model_signing.sigstore_local import LocalSigstore, github_claims, github_workflow_identity

EMAIL = "alice@example.com"
ARTIFACT = b"model weights, or anything else"


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture(scope="module")
def trust(inst: LocalSigstore) -> ClientTrustConfig:
    return ClientTrustConfig.from_json(inst.trust_config_json())


def sign_artifact(inst: LocalSigstore, trust: ClientTrustConfig, token: str, data: bytes = ARTIFACT) -> Bundle:
    with SigningContext.from_trust_config(trust).signer(IdentityToken(token)) as signer:
        return signer.sign_artifact(data)


@pytest.fixture(scope="module")
def bundle(inst: LocalSigstore, trust: ClientTrustConfig) -> Bundle:
    return sign_artifact(inst, trust, inst.mint_token(EMAIL))


def verify(trust: ClientTrustConfig, bundle: Bundle, identity: str, issuer: str, data: bytes = ARTIFACT) -> None:
    Verifier(trusted_root=trust.trusted_root).verify_artifact(
        data, bundle, policy.Identity(identity=identity, issuer=issuer)
    )


def tampered(bundle: Bundle, edit: Any) -> Bundle:
    """A copy of ``bundle`` with ``edit(bundle_dict)`` applied, re-parsed by the client."""
    data = json.loads(bundle.to_json())
    edit(data)
    return Bundle.from_json(json.dumps(data))


def flip_b64(value: str, index: int = -1) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tlog_entry(data: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = data["verificationMaterial"]["tlogEntries"][0]
    return entry


# -- trust config -------------------------------------------------------------------------------------


def test_trust_config_describes_the_instance(inst: LocalSigstore, trust: ClientTrustConfig) -> None:
    doc = json.loads(inst.trust_config_path.read_text())
    assert doc == json.loads(inst.trust_config_json())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
    signing = doc["signingConfig"]
    # Only Rekor v1 is offered (the client would prefer a v2 log it cannot use here).
    assert [s["majorApiVersion"] for s in signing["rekorTlogUrls"]] == [1]
    assert signing["oidcUrls"][0]["url"] == inst.oidc_issuer
    assert all(u["url"].startswith("http://127.0.0.1:") for u in signing["caUrls"] + signing["tsaUrls"])
    # logId.keyId is the SHA-256 of the DER SubjectPublicKeyInfo, as the trusted-root format says.
    for log in doc["trustedRoot"]["tlogs"] + doc["trustedRoot"]["ctlogs"]:
        spki = base64.b64decode(log["publicKey"]["rawBytes"])
        assert base64.b64decode(log["logId"]["keyId"]) == hashlib.sha256(spki).digest()
    assert trust.signing_config.get_oidc_url() == inst.oidc_issuer


# -- sign and verify ----------------------------------------------------------------------------------


def test_signed_artifact_verifies_with_the_signing_identity(
    inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle
) -> None:
    verify(trust, bundle, EMAIL, inst.oidc_issuer)
    cert = bundle.signing_certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [EMAIL]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in eku
    issuer_v1 = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"))
    assert issuer_v1.value.value == inst.oidc_issuer.encode()  # type: ignore[attr-defined]
    # A timestamp from the TSA was requested and embedded.
    assert bundle.verification_material.timestamp_verification_data is not None


def test_dsse_statement_verifies_and_returns_the_payload(inst: LocalSigstore, trust: ClientTrustConfig) -> None:
    digest = hashlib.sha256(b"weights").hexdigest()
    statement = (
        StatementBuilder()
        .subjects([Subject(name="model", digest=DigestSet(root={"sha256": digest}))])
        .predicate_type("https://model_signing/signature/v1.0")
        .predicate({"note": "local"})
        .build()
    )
    with SigningContext.from_trust_config(trust).signer(IdentityToken(inst.mint_token(EMAIL))) as signer:
        signed = signer.sign_dsse(statement)
    payload_type, payload = Verifier(trusted_root=trust.trusted_root).verify_dsse(
        signed, policy.Identity(identity=EMAIL, issuer=inst.oidc_issuer)
    )
    assert payload_type == "application/vnd.in-toto+json"
    assert json.loads(payload)["subject"][0]["digest"]["sha256"] == digest
    assert tlog_entry(json.loads(signed.to_json()))["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}


def test_wrong_identity_is_rejected(inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle) -> None:
    with pytest.raises(VerificationError, match="SANs do not match"):
        verify(trust, bundle, "mallory@example.com", inst.oidc_issuer)


def test_wrong_issuer_is_rejected(trust: ClientTrustConfig, bundle: Bundle) -> None:
    with pytest.raises(VerificationError, match="OIDCIssuer does not match"):
        verify(trust, bundle, EMAIL, "https://accounts.example.com")


def test_other_content_is_rejected(inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle) -> None:
    with pytest.raises(VerificationError, match="message digest mismatch"):
        verify(trust, bundle, EMAIL, inst.oidc_issuer, data=ARTIFACT + b"!")


def test_uri_identity_gets_a_uri_san(inst: LocalSigstore, trust: ClientTrustConfig) -> None:
    identity = "https://ci.example.com/pipelines/release"
    signed = sign_artifact(inst, trust, inst.mint_token(identity))
    verify(trust, signed, identity, inst.oidc_issuer)
    san = signed.signing_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [identity]


def test_github_workflow_identity_and_claims_policies(inst: LocalSigstore, trust: ClientTrustConfig) -> None:
    token = inst.mint_github_token("octo-org/models", ref="refs/tags/v1.0", workflow=".github/workflows/sign.yml")
    signed = sign_artifact(inst, trust, token)
    identity = "https://github.com/octo-org/models/.github/workflows/sign.yml@refs/tags/v1.0"
    verifier = Verifier(trusted_root=trust.trusted_root)
    good = policy.AllOf(
        [
            policy.Identity(identity=identity, issuer=inst.oidc_issuer),
            policy.GitHubWorkflowRepository("octo-org/models"),
            policy.GitHubWorkflowRef("refs/tags/v1.0"),
            policy.GitHubWorkflowTrigger("push"),
            policy.GitHubWorkflowName("release"),
            policy.OIDCIssuerV2(inst.oidc_issuer),
            policy.OIDCSourceRepositoryURI("https://github.com/octo-org/models"),
            policy.OIDCSourceRepositoryRef("refs/tags/v1.0"),
            policy.OIDCBuildSignerURI(identity),
            policy.OIDCBuildConfigURI(identity),
            policy.OIDCRunInvocationURI("https://github.com/octo-org/models/actions/runs/1/attempts/1"),
        ]
    )
    verifier.verify_artifact(ARTIFACT, signed, good)
    with pytest.raises(VerificationError):
        verifier.verify_artifact(ARTIFACT, signed, policy.GitHubWorkflowRepository("octo-org/other"))
    with pytest.raises(VerificationError):
        verifier.verify_artifact(ARTIFACT, signed, policy.OIDCSourceRepositoryRef("refs/heads/main"))


# -- tampering the client must catch ------------------------------------------------------------------


def test_corrupted_set_is_rejected(inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        promise = tlog_entry(data)["inclusionPromise"]
        promise["signedEntryTimestamp"] = flip_b64(promise["signedEntryTimestamp"], 10)

    with pytest.raises(VerificationError, match="SET: invalid inclusion promise"):
        verify(trust, tampered(bundle, corrupt), EMAIL, inst.oidc_issuer)


def test_corrupted_checkpoint_signature_is_rejected(
    inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle
) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        checkpoint = tlog_entry(data)["inclusionProof"]["checkpoint"]
        note, _, signature_line = checkpoint["envelope"].partition("\n\n")
        dash, name, signature = signature_line.rstrip("\n").split(" ")
        # Keep the 4-byte key hint (so the client finds the key) and break the signature itself.
        checkpoint["envelope"] = f"{note}\n\n{dash} {name} {flip_b64(signature, 12)}\n"

    with pytest.raises(VerificationError, match="checkpoint: invalid signature"):
        verify(trust, tampered(bundle, corrupt), EMAIL, inst.oidc_issuer)


def test_corrupted_inclusion_proof_is_rejected(inst: LocalSigstore, trust: ClientTrustConfig) -> None:
    # Sign twice so the second entry's audit path is not empty.
    sign_artifact(inst, trust, inst.mint_token(EMAIL), b"first")
    signed = sign_artifact(inst, trust, inst.mint_token(EMAIL), b"second")
    assert tlog_entry(json.loads(signed.to_json()))["inclusionProof"]["hashes"]

    def corrupt(data: dict[str, Any]) -> None:
        proof = tlog_entry(data)["inclusionProof"]
        proof["hashes"][0] = flip_b64(proof["hashes"][0], 0)

    with pytest.raises(VerificationError, match="inclusion proof contains invalid root hash"):
        verify(trust, tampered(signed, corrupt), EMAIL, inst.oidc_issuer, data=b"second")


def test_timestamp_alone_establishes_time(inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle) -> None:
    # With the SET removed the TSA timestamp is the only verified time source, so it must verify.
    without_set = tampered(bundle, lambda data: tlog_entry(data).pop("inclusionPromise"))
    verify(trust, without_set, EMAIL, inst.oidc_issuer)

    def no_time_source(data: dict[str, Any]) -> None:
        tlog_entry(data).pop("inclusionPromise")
        data["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = []

    with pytest.raises(InvalidBundle, match="inclusion promise or signed timestamp"):
        tampered(bundle, no_time_source)


def test_corrupted_timestamp_is_rejected(inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        tlog_entry(data).pop("inclusionPromise")
        stamp = data["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
        # The last bytes are the TSA's ECDSA signature: still parseable, no longer valid.
        stamp["signedTimestamp"] = flip_b64(stamp["signedTimestamp"], -3)

    with pytest.raises(VerificationError, match="not enough sources of verified time"):
        verify(trust, tampered(bundle, corrupt), EMAIL, inst.oidc_issuer)


def test_bundle_from_another_instance_is_rejected(
    inst: LocalSigstore, trust: ClientTrustConfig, bundle: Bundle
) -> None:
    with LocalSigstore() as other:
        other_trust = ClientTrustConfig.from_json(other.trust_config_json())
        foreign = sign_artifact(other, other_trust, other.mint_token(EMAIL))
        verify(other_trust, foreign, EMAIL, other.oidc_issuer)  # fine where it was made
        with pytest.raises(VerificationError):
            verify(trust, foreign, EMAIL, other.oidc_issuer)
        with pytest.raises(VerificationError):
            verify(other_trust, bundle, EMAIL, inst.oidc_issuer)


# -- persistence and ambient credentials --------------------------------------------------------------


def test_restarted_instance_verifies_old_bundles(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalSigstore(state) as first:
        first_trust = ClientTrustConfig.from_json(first.trust_config_json())
        old = sign_artifact(first, first_trust, first.mint_token(EMAIL))
        old_issuer = first.oidc_issuer
    with LocalSigstore(state) as again:
        again_trust = ClientTrustConfig.from_json(again.trust_config_path.read_text())
        verify(again_trust, old, EMAIL, old_issuer)
        # The log kept its entry: the next one is appended after it.
        new = sign_artifact(again, again_trust, again.mint_token(EMAIL), b"after restart")
        assert tlog_entry(json.loads(new.to_json()))["logIndex"] == "1"
        verify(again_trust, new, EMAIL, again.oidc_issuer, data=b"after restart")


def test_detect_credential_uses_the_github_actions_endpoint(
    inst: LocalSigstore, trust: ClientTrustConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in inst.github_actions_env("octo-org/models").items():
        monkeypatch.setenv(name, value)
    token = detect_credential()
    assert token is not None
    identity = IdentityToken(token)
    assert identity.issuer == inst.oidc_issuer
    signed = sign_artifact(inst, trust, token)
    # Written out (Fulcio's workflow SAN for the default workflow and ref), not derived with the code under test.
    expected = "https://github.com/octo-org/models/.github/workflows/release.yml@refs/heads/main"
    verify(trust, signed, expected, inst.oidc_issuer)
    # The public helper that tells users what to pin says the same.
    assert github_workflow_identity(github_claims("octo-org/models")) == expected
