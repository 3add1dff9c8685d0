"""The keyless ``sigstore`` method through the Python API, against one local Sigstore instance per module.

``SigstoreSigner`` / ``SigstoreVerifier`` / ``IdentityPolicy`` / ``TokenSource`` with the unmodified sigstore
client over 127.0.0.1: files, shards and single-file models, GitHub workflow claims, every token source and
its errors, trusted-root selection.  Digests are computed here with hashlib.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from asn1crypto.core import UTF8String
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityError, IdentityToken

import model_signing as ms
from model_signing.errors import InputError, KeyMaterialError, ModelMismatchError, SigningError, VerificationError
from model_signing.methods import read_bundle
from model_signing.methods import sigstore as keyless
from model_signing.methods.sigstore._ops import certificate_identity as _certificate_identity
from model_signing.methods.sigstore._token import renewed_token
from model_signing.sigstore_local import LocalSigstore, github_claims

EMAIL = "alice@example.com"
FAST = ms.HashingConfig(max_workers=1, progress=False)
WEIGHTS = bytes(range(256)) * 3  # 768 bytes: three 256-byte shards
FILES = {"config.json": b'{"layers": 2}\n', "weights/w.bin": WEIGHTS, "weights/empty": b""}


def write_model(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def root_of(digests: list[str]) -> str:
    """The OMS subject digest: SHA-256 over the raw resource digests, in resource (name) order."""
    return hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


def signer_for(inst: LocalSigstore, token: str | None = None, **source: object) -> ms.SigstoreSigner:
    tokens = ms.TokenSource(identity_token=token if token is not None else inst.mint_token(EMAIL), **source)  # type: ignore[arg-type]
    return ms.SigstoreSigner(trust_config=inst.trust_config_path, token_source=tokens)


def verifier_for(inst: LocalSigstore, identity: str = EMAIL, **policy: str) -> ms.SigstoreVerifier:
    return ms.SigstoreVerifier(
        ms.IdentityPolicy(issuer=inst.oidc_issuer, identity=identity, **policy), trust_config=inst.trust_config_path
    )


@pytest.fixture(scope="module")
def signed(inst: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ms.SignResult]:
    tmp = tmp_path_factory.mktemp("signed")
    model = write_model(tmp / "model")
    signature = tmp / "model.sig"
    return model, signature, ms.sign(model, signer_for(inst), signature_path=signature, hashing=FAST)


# -- sign and verify -----------------------------------------------------------------------------------


def test_files_model_signs_and_verifies(inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult]) -> None:
    model, signature, result = signed
    digests = {name: sha256_hex(data) for name, data in FILES.items()}
    assert {r.name: r.hex for r in result.manifest.resources} == digests
    assert result.root_digest == root_of([digests[n] for n in sorted(digests)])
    assert result.method == "sigstore"
    # Once signed, the signer is described by its certificate: the identity verifiers must name.
    assert result.signer == f"{EMAIL} via {inst.oidc_issuer}"

    verified = ms.verify(model, verifier_for(inst), signature_path=signature, max_workers=1)
    assert verified.method == "sigstore"
    assert verified.root_digest == result.root_digest
    assert verified.signer == f"{EMAIL} via {inst.oidc_issuer} (Sigstore certificate)"
    assert verified.as_dict()["verified"] is True


def test_shard_model_signs_and_verifies(inst: LocalSigstore, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", {"w.bin": WEIGHTS})
    signature = tmp_path / "model.sig"
    hashing = ms.HashingConfig(method="shards", shard_size=256, max_workers=1, progress=False)
    result = ms.sign(model, signer_for(inst), signature_path=signature, hashing=hashing)
    expected = {f"w.bin:{i}:{i + 256}": sha256_hex(WEIGHTS[i : i + 256]) for i in (0, 256, 512)}
    assert {r.name: r.hex for r in result.manifest.resources} == expected
    ms.verify(model, verifier_for(inst), signature_path=signature, max_workers=1)

    changed = bytearray(WEIGHTS)
    changed[300] ^= 0xFF
    (model / "w.bin").write_bytes(bytes(changed))
    with pytest.raises(ModelMismatchError) as info:
        ms.verify(model, verifier_for(inst), signature_path=signature, max_workers=1)
    [diff] = info.value.differences  # one per file, the changed shard behind it
    assert (diff.kind, diff.name, diff.expected_size, diff.actual_size) == ("modified", "w.bin", 768, 768)
    [shard] = diff.shards
    assert (shard.kind, shard.name) == ("modified", "w.bin:256:512")
    assert (shard.expected, shard.actual) == (sha256_hex(WEIGHTS[256:512]), sha256_hex(bytes(changed[256:512])))


def test_single_file_model_with_a_trust_config_object(inst: LocalSigstore, tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(WEIGHTS)
    trust = ClientTrustConfig.from_json(inst.trust_config_path.read_text())
    signer = ms.SigstoreSigner(trust_config=trust, token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))
    result = ms.sign(weights, signer, signature_path=tmp_path / "w.sig", hashing=FAST)
    assert [(r.name, r.hex) for r in result.manifest.resources] == [("weights.bin", sha256_hex(WEIGHTS))]
    assert ms.verify(weights, verifier_for(inst), signature_path=tmp_path / "w.sig").root_digest == root_of(
        [sha256_hex(WEIGHTS)]
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"identity": "mallory@example.com"}, "SANs do not match"),
        ({"identity_regexp": r"mallory@.*"}, "no certificate identity matches /mallory@.*/"),
        ({"identity": EMAIL, "issuer": "https://accounts.example.com"}, "OIDCIssuer does not match"),
    ],
)
def test_wrong_signer_is_a_verification_error(
    inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult], policy: dict[str, str], message: str
) -> None:
    model, signature, _ = signed
    verifier = ms.SigstoreVerifier(ms.IdentityPolicy(**{"issuer": inst.oidc_issuer, **policy}),
                                   trust_config=inst.trust_config_path)
    with pytest.raises(VerificationError, match=message) as info:
        ms.verify(model, verifier, signature_path=signature)
    assert str(signature) in str(info.value)


def test_regexp_policy_matches_the_whole_identity(
    inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult]
) -> None:
    model, signature, _ = signed
    policy = ms.IdentityPolicy(issuer=inst.oidc_issuer, identity_regexp=r".+@example\.com")
    ms.verify(model, ms.SigstoreVerifier(policy, trust_config=inst.trust_config_path), signature_path=signature)
    assert policy.describe() == rf"/.+@example\.com/ via {inst.oidc_issuer}"


def _certificate(san: x509.GeneralName | None, issuer: str) -> x509.Certificate:
    """A self-signed certificate with one SAN (or none) and Fulcio's issuer extension (for policy checks only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "policy test")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer.encode()),
                       critical=False)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=True)
    return builder.sign(key, hashes.SHA256())


def test_regexp_policy_reads_only_sigstore_other_names() -> None:
    issuer = "https://issuer.example"
    policy = ms.IdentityPolicy(issuer=issuer, identity_regexp=r"alice@example\.com").to_sigstore()
    value = UTF8String("alice@example.com").dump()
    # Fulcio's other-name type holds an identity: matched on its decoded text, not on the DER bytes.
    policy.verify(_certificate(x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7"), value), issuer))
    # Any other other-name type is not an identity Fulcio vouches for, whatever it contains.
    anything = ms.IdentityPolicy(issuer=issuer, identity_regexp=r"(?s).*alice@example\.com").to_sigstore()
    with pytest.raises(SigstoreVerificationError, match="no certificate identity matches"):
        anything.verify(_certificate(x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), value), issuer))
    with pytest.raises(SigstoreVerificationError, match="OIDCIssuer does not match"):
        policy.verify(_certificate(x509.RFC822Name("alice@example.com"), "https://other.example"))
    with pytest.raises(SigstoreVerificationError, match=r"no certificate identity matches .*actual identities: \[\]"):
        anything.verify(_certificate(None, issuer))


def test_signer_description_names_every_identity_kind() -> None:
    # The signer report reads the same SAN identities as the regexp policy, Sigstore other-names included.
    issuer = "https://issuer.example"
    other_name = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7"), UTF8String("alice").dump())
    assert _certificate_identity(_certificate(other_name, issuer)) == f"alice via {issuer}"
    assert _certificate_identity(_certificate(x509.UniformResourceIdentifier("https://ci.example/job"), issuer)) == (
        f"https://ci.example/job via {issuer}"
    )
    assert _certificate_identity(_certificate(None, issuer)) == f"no identity via {issuer}"


def test_identity_policy_rejects_unusable_arguments() -> None:
    with pytest.raises(InputError, match="`issuer` is required"):
        ms.IdentityPolicy(issuer="", identity=EMAIL)
    with pytest.raises(InputError, match="exactly one of `identity` and `identity_regexp`"):
        ms.IdentityPolicy(issuer="https://issuer.example")
    with pytest.raises(InputError, match="exactly one of `identity` and `identity_regexp`"):
        ms.IdentityPolicy(issuer="https://issuer.example", identity=EMAIL, identity_regexp=".*")
    with pytest.raises(InputError, match="`identity` is empty"):
        ms.IdentityPolicy(issuer="https://issuer.example", identity=" ")
    with pytest.raises(InputError, match="not a valid regexp"):
        ms.IdentityPolicy(issuer="https://issuer.example", identity_regexp="(unclosed")


def test_method_mismatch_is_refused(
    inst: LocalSigstore,
    signed: tuple[Path, Path, ms.SignResult],
    ec_keypair: Callable[..., tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    model, signature, _ = signed
    priv, pub = ec_keypair()
    with pytest.raises(VerificationError, match="is a sigstore signature, not a key one"):
        ms.verify(model, ms.KeyVerifier(pub), signature_path=signature)
    key_sig = tmp_path / "key.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=key_sig, hashing=FAST)
    with pytest.raises(VerificationError, match="is a key signature, not a sigstore one"):
        ms.verify(model, verifier_for(inst), signature_path=key_sig)
    # The verifier refuses it by itself too, when called directly.
    with pytest.raises(VerificationError, match="is a key signature, not a sigstore one"):
        verifier_for(inst).verify(read_bundle(key_sig))


# -- GitHub workflow identities --------------------------------------------------------------------------

REPOSITORY = "octo-org/models"
REF = "refs/tags/v2.0"
SHA = "0123456789abcdef0123456789abcdef01234567"
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/publish.yml@{REF}"


@pytest.fixture(scope="module")
def workflow_signed(inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult]) -> tuple[Path, Path]:
    model, signature, _ = signed
    token = inst.mint_github_token(REPOSITORY, ref=REF, sha=SHA, workflow=".github/workflows/publish.yml",
                                   workflow_name="publish", event_name="release")
    ci_signature = signature.with_name("ci.sig")
    result = ms.sign(model, signer_for(inst, token), signature_path=ci_signature, hashing=FAST)
    assert result.signer == f"{WORKFLOW_IDENTITY} via {inst.oidc_issuer}"
    return model, ci_signature


def test_workflow_claims_policy(inst: LocalSigstore, workflow_signed: tuple[Path, Path]) -> None:
    model, signature = workflow_signed
    verifier = verifier_for(inst, WORKFLOW_IDENTITY, repository=REPOSITORY, ref=REF, workflow="publish",
                            workflow_trigger="release", workflow_sha=SHA)
    assert WORKFLOW_IDENTITY in ms.verify(model, verifier, signature_path=signature).signer


@pytest.mark.parametrize(
    ("claim", "value", "policy"),
    [
        ("repository", "octo-org/other", "GitHubWorkflowRepository"),
        ("ref", "refs/heads/main", "GitHubWorkflowRef"),
        ("workflow", "release", "GitHubWorkflowName"),
        ("workflow_trigger", "push", "GitHubWorkflowTrigger"),
        ("workflow_sha", "f" * 40, "GitHubWorkflowSHA"),
    ],
)
def test_each_wrong_workflow_claim_fails(
    inst: LocalSigstore, workflow_signed: tuple[Path, Path], claim: str, value: str, policy: str
) -> None:
    model, signature = workflow_signed
    with pytest.raises(VerificationError, match=f"{policy} does not match"):
        ms.verify(model, verifier_for(inst, WORKFLOW_IDENTITY, **{claim: value}), signature_path=signature)


def test_ambient_github_actions_token(
    inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SIGSTORE_IDENTITY_TOKEN", raising=False)
    for name, value in inst.github_actions_env(REPOSITORY, ref=REF, workflow=".github/workflows/publish.yml").items():
        monkeypatch.setenv(name, value)
    model, _, _ = signed
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path)
    assert signer.description == f"repo:{REPOSITORY}:ref:{REF} via {inst.oidc_issuer}"  # the token's sub
    ambient = tmp_path / "ambient.sig"
    assert ms.sign(model, signer, signature_path=ambient, hashing=FAST).signer.startswith(WORKFLOW_IDENTITY)
    ms.verify(model, verifier_for(inst, WORKFLOW_IDENTITY, repository=REPOSITORY), signature_path=ambient)
    # With ambient credentials disabled (and no terminal), nothing else may be tried.
    with pytest.raises(KeyMaterialError, match="ambient CI credentials are disabled"):
        ms.SigstoreSigner(trust_config=inst.trust_config_path,
                          token_source=ms.TokenSource(use_ambient_credentials=False, interactive=False))


# -- identity tokens -------------------------------------------------------------------------------------


def _unsigned_jwt(**claims: object) -> str:
    # The client reads claims without checking the signature (the CA does), so any key shows the parsing.
    return jwt.encode(claims, "not-the-issuer-key-but-long-enough-for-hs256", algorithm="HS256")


def _hand_made_jwt(**claims: object) -> str:
    # Claims PyJWT refuses to encode (it checks them on encoding too); the signature part is arbitrary.
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([part(b'{"alg":"HS256","typ":"JWT"}'), part(json.dumps(claims).encode()), part(b"sig")])


@pytest.mark.parametrize(
    ("make_token", "problem"),
    [
        (lambda inst, now: inst.mint_token(EMAIL, extra_claims={"iat": now - 900, "nbf": now - 900, "exp": now - 300}),
         "it expired at "),
        (lambda inst, now: inst.mint_token(EMAIL, audience="other-client"), "its audience is 'other-client'"),
        (lambda inst, now: inst.mint_token(EMAIL, extra_claims={"iat": now + 900, "nbf": now + 900}),
         "it is not valid yet"),
        (lambda inst, now: _unsigned_jwt(iss=inst.oidc_issuer, aud="sigstore", iat=now, exp=now + 60),
         "it has no 'sub' claim"),
        (lambda inst, now: "not.a-token", "it is not a JWT"),
        # Tokens PyJWT (and so sigstore) refuses, caught before hashing too.
        (lambda inst, now: _unsigned_jwt(iss=inst.oidc_issuer, aud="sigstore", sub=None, iat=now, exp=now + 60),
         "it has no 'sub' claim"),
        (lambda inst, now: "bm90IGpzb24" + inst.mint_token(EMAIL)[inst.mint_token(EMAIL).index("."):],
         "it is not a JWT"),
        (lambda inst, now: _hand_made_jwt(iss=[inst.oidc_issuer], aud="sigstore", sub=EMAIL, iat=now, exp=now + 60),
         "its 'iss' claim is not a string"),
        (lambda inst, now: _unsigned_jwt(iss=inst.oidc_issuer, aud=["sigstore", 1], sub=EMAIL, iat=now,
                                         exp=now + 60), "its 'aud' claim is not a string or a list of strings"),
    ],
    ids=["expired", "audience", "not-yet-valid", "no-sub", "garbage", "null-sub", "bad-header",
         "iss-list", "aud-number"],
)
def test_unusable_tokens_are_refused_before_signing(inst: LocalSigstore, make_token, problem: str) -> None:  # type: ignore[no-untyped-def]
    token = make_token(inst, int(time.time()))
    with pytest.raises((IdentityError, TypeError)):  # sigstore refuses each of them too
        IdentityToken(token)
    with pytest.raises(KeyMaterialError) as info:
        signer_for(inst, token)
    assert f"the identity token from `identity_token` is unusable: {problem}" in str(info.value)


def test_token_from_the_environment(
    inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, _, _ = signed
    monkeypatch.setenv("SIGSTORE_IDENTITY_TOKEN", inst.mint_token("carol@example.com"))
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path,
                               token_source=ms.TokenSource(use_ambient_credentials=False, interactive=False))
    assert signer.description == f"carol@example.com via {inst.oidc_issuer}"
    # An explicit token wins over the environment.
    assert signer_for(inst, inst.mint_token("dave@example.com")).description.startswith("dave@example.com via")
    ms.sign(model, signer, signature_path=tmp_path / "env.sig", hashing=FAST)
    ms.verify(model, verifier_for(inst, "carol@example.com"), signature_path=tmp_path / "env.sig")

    monkeypatch.setenv("SIGSTORE_IDENTITY_TOKEN", "garbage")
    with pytest.raises(KeyMaterialError, match="from SIGSTORE_IDENTITY_TOKEN is unusable: it is not a JWT"):
        ms.SigstoreSigner(trust_config=inst.trust_config_path)


def test_no_token_without_a_terminal(inst: LocalSigstore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGSTORE_IDENTITY_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    with pytest.raises(KeyMaterialError, match=f"no terminal for the interactive sign-in with {inst.oidc_issuer}"):
        ms.SigstoreSigner(trust_config=inst.trust_config_path,
                          token_source=ms.TokenSource(use_ambient_credentials=False, interactive=False))


def test_a_token_that_expires_while_hashing(
    inst: LocalSigstore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model")
    now = int(time.time())
    lifetime = {"iat": now, "nbf": now, "exp": now + 3}
    # The certificate is requested while the model is hashed, so a token that expires meanwhile is fine:
    # it was valid when it was used.
    explicit = signer_for(inst, inst.mint_token(EMAIL, extra_claims=lifetime))
    assert explicit.description == f"{EMAIL} via {inst.oidc_issuer}"  # the certificate has been obtained
    while time.time() < now + 3.2:  # let the token expire, as a long hash would
        time.sleep(0.1)
    ms.sign(model, explicit, signature_path=tmp_path / "ok.sig", hashing=FAST)
    ms.verify(model, verifier_for(inst), signature_path=tmp_path / "ok.sig")

    # A certificate about to expire when the signature is made is replaced, which needs a valid token:
    # an explicit one cannot be renewed unattended, so a clear error and no signature.
    late = signer_for(inst, inst.mint_token(EMAIL, extra_claims={**lifetime, "exp": int(time.time()) + 2}))
    assert late.description.startswith(EMAIL)
    while time.time() < now + 5.5:
        time.sleep(0.1)
    monkeypatch.setattr(keyless, "_RENEW_BEFORE_EXPIRY", 3600.0)  # every certificate "expires" now
    with pytest.raises(KeyMaterialError, match=f"the identity token for {EMAIL} expired at .*before the signature"):
        ms.sign(model, late, signature_path=tmp_path / "x.sig", hashing=FAST)
    assert not (tmp_path / "x.sig").exists()

    # A CI token is fetched again from the ambient credentials, for the same workflow identity only.
    claims = github_claims(REPOSITORY)
    now = int(time.time())
    short_ci = inst.mint_token(str(claims["sub"]), extra_claims={**claims, "iat": now - 20, "nbf": now - 20,
                                                                   "exp": now - 10})
    identity = f"{claims['sub']} via {inst.oidc_issuer}"
    monkeypatch.delenv("SIGSTORE_IDENTITY_TOKEN", raising=False)
    for name, value in inst.github_actions_env(REPOSITORY).items():
        monkeypatch.setenv(name, value)
    renewed = renewed_token(ms.TokenSource(), short_ci, identity)
    assert renewed != short_ci
    fresh = IdentityToken(renewed)
    assert fresh.in_validity_period() and f"{fresh.identity} via {fresh.issuer}" == identity
    # With the renewal, signing goes through: the new certificate is requested with the new token.
    ci_signer = ms.SigstoreSigner(trust_config=inst.trust_config_path)
    ms.sign(model, ci_signer, signature_path=tmp_path / "ci.sig", hashing=FAST)
    assert ci_signer.description.startswith(f"https://github.com/{REPOSITORY}/")
    with pytest.raises(KeyMaterialError, match="expired"):
        renewed_token(ms.TokenSource(use_ambient_credentials=False), short_ci, identity)
    for name, value in inst.github_actions_env("octo-org/other").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(KeyMaterialError, match="expired"):
        renewed_token(ms.TokenSource(), short_ci, identity)


def test_foreign_token_and_unreachable_instance(inst: LocalSigstore, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    with LocalSigstore() as other:
        stale_config = tmp_path / "other-tc.json"
        stale_config.write_text(other.trust_config_json())
        foreign = other.mint_token(EMAIL)
        live = other.mint_token(EMAIL)
    with pytest.raises(SigningError, match=r"the Fulcio CA refused the request \(HTTP 401 .*not valid for this issuer"):
        ms.sign(model, signer_for(inst, foreign), signature_path=tmp_path / "a.sig", hashing=FAST)
    # The other instance is gone: its services cannot be reached.
    signer = ms.SigstoreSigner(trust_config=stale_config, token_source=ms.TokenSource(identity_token=live))
    with pytest.raises(SigningError, match=r"cannot reach the Fulcio CA at http://127\.0\.0\.1:\d+/api/v2/signingCert"):
        ms.sign(model, signer, signature_path=tmp_path / "b.sig", hashing=FAST)
    assert not (tmp_path / "a.sig").exists() and not (tmp_path / "b.sig").exists()


# -- trusted roots ---------------------------------------------------------------------------------------


def test_trusted_root_choices(inst: LocalSigstore, signed: tuple[Path, Path, ms.SignResult], tmp_path: Path) -> None:
    model, signature, _ = signed
    policy = ms.IdentityPolicy(issuer=inst.oidc_issuer, identity=EMAIL)
    root = tmp_path / "root.json"
    root.write_text(json.dumps(json.loads(inst.trust_config_path.read_text())["trustedRoot"]))
    ms.verify(model, ms.SigstoreVerifier(policy, trusted_root=root, offline=True), signature_path=signature)
    # The public-good root shipped inside sigstore knows nothing of the local instance.
    with pytest.raises(VerificationError, match=r"not issued by the trusted root in use \(public-good\)"):
        ms.verify(model, ms.SigstoreVerifier(policy, offline=True), signature_path=signature)
    with pytest.raises(InputError, match="`trusted_root` and `trust_config` are exclusive"):
        ms.SigstoreVerifier(policy, trusted_root=root, trust_config=inst.trust_config_path)
    with pytest.raises(InputError, match="`staging=True` and `trust_config` are exclusive"):
        ms.SigstoreSigner(trust_config=inst.trust_config_path, staging=True)
    with pytest.raises(InputError, match="`staging=True` and `trust_config` are exclusive"):
        ms.SigstoreVerifier(policy, trust_config=inst.trust_config_path, staging=True)
    with pytest.raises(InputError, match="`staging=True` and `trusted_root` are exclusive"):
        ms.SigstoreVerifier(policy, trusted_root=root, staging=True, offline=True)
    with pytest.raises(InputError, match=f"{root}: not a valid Sigstore ClientTrustConfig"):
        ms.SigstoreVerifier(policy, trust_config=root)  # a trusted root is not a trust config
    with pytest.raises(InputError, match=r"`trusted_root` file .*missing\.json does not exist"):
        ms.SigstoreVerifier(policy, trusted_root=tmp_path / "missing.json")
