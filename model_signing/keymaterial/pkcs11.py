"""Keys kept in an HSM or smart card, named by an RFC 7512 ``pkcs11:`` URI (the ``pkcs11`` extra).

A URI names the PKCS #11 library (``module-path``), the token and the key object, and where the PIN comes
from::

    pkcs11:token=release;object=model-key;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin

:func:`open_key` logs in and returns a :class:`Pkcs11Key`, a
:class:`~model_signing.keymaterial.sources.SigningKey` whose private key never leaves the token: ECDSA keys
sign the SHA-256/384/512 digest of the message computed here (``CKM_ECDSA``, the raw ``r || s`` the token
returns converted to the DER form OMS verifiers expect), Ed25519 keys sign the message itself
(``CKM_EDDSA``).  The public key is read from the token (the public key object with the same id or label,
its ``CKA_EC_PARAMS`` / ``CKA_EC_POINT``), and so is the certificate for the ``certificate`` method when the
token holds one under the same id or label.

python-pkcs11 is imported only inside the functions here: a PEM key never loads it.  Every failure is a
:class:`~model_signing.errors.KeyMaterialError` (or, once signing has started, a
:class:`~model_signing.errors.SigningError`) naming the part of the URI at fault and the fix; the PIN is
never part of a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_signing._internal.files import read_small_file
from model_signing.errors import KeyMaterialError, SigningError
from model_signing.keymaterial import algorithms as _algorithms

if TYPE_CHECKING:
    from cryptography import x509

    from model_signing.keymaterial.algorithms import Algorithm, PublicKey

_log = logging.getLogger(__name__)

SCHEME = "pkcs11:"
#: RFC 7512 section 2.3: the attributes of the path part (which token, which object) ...
PATH_ATTRIBUTES = (
    "token", "manufacturer", "serial", "model", "library-manufacturer", "library-description",
    "library-version", "object", "type", "id", "slot-description", "slot-manufacturer", "slot-id",
)
#: ... and of the query part (how to reach it).
QUERY_ATTRIBUTES = ("pin-source", "pin-value", "module-name", "module-path")
_TYPES = ("public", "private", "cert", "secret-key", "data")
#: Where ``module-name`` is looked for (Debian's multiarch p11-kit directory, then the peer's list).
MODULE_DIRECTORIES = (
    "/usr/lib/x86_64-linux-gnu/pkcs11", "/usr/lib/aarch64-linux-gnu/pkcs11", "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11", "/usr/lib/softhsm", "/usr/local/lib/softhsm",
)
#: A PIN file is a few bytes; anything large is not one.
_MAX_PIN_FILE = 4096
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: The named curves ECDSA keys may use, by OID, and the Ed25519 spellings of CKA_EC_PARAMS.
_EC_CURVES = {"1.2.840.10045.3.1.7": "secp256r1", "1.3.132.0.34": "secp384r1", "1.3.132.0.35": "secp521r1"}
_ED25519_OID = "1.3.101.112"
_ED25519_NAMES = ("edwards25519", "curve25519", "ed25519")
_WHERE = "PKCS #11 URI"
#: A login is the whole process's, and each use ends with a logout: one use of a token at a time, or a
#: thread's logout would end another's login mid-signature.
_TOKEN_USE = threading.RLock()


def is_uri(reference: object) -> bool:
    """Whether ``reference`` is a ``pkcs11:`` URI (the scheme is case-insensitive, RFC 3986)."""
    return isinstance(reference, str) and reference[: len(SCHEME)].lower() == SCHEME


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI: its attributes, percent-decoded (``id`` stays bytes, the others are text)."""

    path: Mapping[str, bytes] = field(default_factory=dict)
    query: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        """Parse ``uri``; an unknown or repeated attribute, bad percent-encoding or a bad value is refused."""
        if not is_uri(uri):
            raise KeyMaterialError(f"{_WHERE} must start with {SCHEME!r}")
        path_part, _, query_part = uri[len(SCHEME):].partition("?")
        path = _attributes(path_part, ";", PATH_ATTRIBUTES, "path")
        query = _attributes(query_part, "&", QUERY_ATTRIBUTES, "query")
        parsed = cls(path, query)
        parsed._validate()
        return parsed

    def text(self, name: str) -> str | None:
        """The attribute ``name`` (path or query part) as text, ``None`` when absent."""
        value = self.path.get(name, self.query.get(name))
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyMaterialError(f"{_WHERE}: {name}= is not UTF-8 text once percent-decoded") from None

    @property
    def id(self) -> bytes | None:
        """``CKA_ID`` of the object (raw bytes, e.g. ``id=%01`` is ``b"\\x01"``)."""
        return self.path.get("id")

    def shown(self) -> str:
        """The URI for messages: every attribute, except that the PIN is never shown."""
        def part(attrs: Mapping[str, bytes], sep: str) -> str:
            return sep.join(
                f"{k}=***" if k == "pin-value" else f"{k}={_quote(v, k == 'id')}" for k, v in attrs.items()
            )

        query = part(self.query, "&")
        return SCHEME + part(self.path, ";") + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        # Not the dataclass's: that would show pin-value (a logged or inspected key would leak its PIN).
        return f"Pkcs11Uri({self.shown()!r})"

    def _validate(self) -> None:
        slot = self.text("slot-id")
        if slot is not None and not re.fullmatch(r"[0-9]+", slot):
            raise KeyMaterialError(f"{_WHERE}: slot-id={slot} is not a number; give the decimal slot id")
        version = self.text("library-version")
        if version is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", version):
            raise KeyMaterialError(f"{_WHERE}: library-version={version} is not MAJOR or MAJOR.MINOR")
        kind = self.text("type")
        if kind is not None and kind not in _TYPES:
            raise KeyMaterialError(f"{_WHERE}: type={kind} is not one of {', '.join(_TYPES)}")
        if kind is not None and kind != "private":
            raise KeyMaterialError(
                f"{_WHERE}: type={kind} names no private key; a signing key is type=private (or leave type out)"
            )
        if "pin-value" in self.query and "pin-source" in self.query:
            raise KeyMaterialError(f"{_WHERE}: give the PIN once, with pin-value or pin-source, not both")
        module = self.text("module-path")
        if module is not None and not os.path.isabs(module):
            raise KeyMaterialError(
                f"{_WHERE}: module-path={module} is not an absolute path; give the full path of the token's "
                "PKCS #11 library"
            )
        if self.text("object") is None and self.id is None:
            raise KeyMaterialError(
                f"{_WHERE} {self.shown()} names no key: add object=LABEL or id=%XX to its path part"
            )


def _attributes(part: str, separator: str, known: tuple[str, ...], where: str) -> dict[str, bytes]:
    from urllib.parse import unquote_to_bytes

    found: dict[str, bytes] = {}
    if not part:
        return found
    for number, item in enumerate(part.split(separator), 1):
        name, eq, value = item.partition("=")
        if not eq or not name:
            # A query item is never echoed: a mistyped "pin-value" would otherwise print the PIN.
            shown = repr(item) if where == "path" else f"attribute {number}"
            raise KeyMaterialError(f"{_WHERE}: {shown} in the {where} part is not NAME=VALUE")
        if name not in known and "pin-value" in found:
            # Most likely the rest of a PIN split at an unencoded '&': its "name" is part of the PIN.
            raise KeyMaterialError(
                f"{_WHERE}: attribute {number} in the {where} part is unknown; a '&' in the PIN must be written "
                "%26 (and '%' as %25), or give the PIN with pin-source"
            )
        if name not in known:
            raise KeyMaterialError(
                f"{_WHERE}: unknown attribute {name!r} in the {where} part; the {where} part may hold "
                f"{', '.join(known)} (RFC 7512)"
            )
        if name in found:
            raise KeyMaterialError(f"{_WHERE}: {name}= is given twice")
        if _BAD_PERCENT.search(value):
            raise KeyMaterialError(f"{_WHERE}: {name}= has a '%' not followed by two hex digits")
        found[name] = unquote_to_bytes(value)
    return found


def _quote(value: bytes, every_byte: bool) -> str:
    from urllib.parse import quote_from_bytes

    if every_byte:  # ids are binary: shown as %XX throughout, as RFC 7512's examples do
        return "".join(f"%{b:02X}" for b in value)
    return quote_from_bytes(value, safe="/:@!$'()*+,.-_~ ")


def _describe(exc: BaseException) -> str:
    """A PKCS #11 error as words: python-pkcs11's classes are named after the CKR_ codes, often without text."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
    return f"{words}: {exc}" if str(exc) else words


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise KeyMaterialError(
            f"{_WHERE}: keys in an HSM need the python-pkcs11 package; install it with "
            "pip install 'modelseal[pkcs11]'"
        ) from None
    return pkcs11


def _module_path(uri: Pkcs11Uri) -> str:
    """The PKCS #11 library to load: ``module-path`` (a file, or a directory searched for ``module-name``)."""
    path, name = uri.text("module-path"), uri.text("module-name")
    if path is not None and not os.path.isdir(path):
        if not os.path.exists(path):
            raise KeyMaterialError(
                f"{_WHERE}: module-path={path}: no such file; give the absolute path of the token's PKCS #11 "
                "library (SoftHSM2's is /usr/lib/softhsm/libsofthsm2.so)"
            )
        return path
    if name is None:
        if path is not None:
            raise KeyMaterialError(f"{_WHERE}: module-path={path} is a directory; add module-name=NAME to pick "
                                   "the library in it, or give the library's file")
        raise KeyMaterialError(
            f"{_WHERE} names no PKCS #11 library: add module-path=/path/to/library.so to its query part "
            "(SoftHSM2: ?module-path=/usr/lib/softhsm/libsofthsm2.so)"
        )
    wanted = {name.lower(), f"{name.lower()}.so", f"lib{name.lower()}.so"}
    directories = (path,) if path is not None else MODULE_DIRECTORIES
    for directory in directories:
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.lower() in wanted:
                return os.path.join(directory, entry)
    raise KeyMaterialError(
        f"{_WHERE}: module-name={name} is in none of {', '.join(directories)}; give the library's file with "
        "module-path=/path/to/library.so"
    )


def _load_library(uri: Pkcs11Uri) -> Any:
    pkcs11 = _pkcs11()
    path = _module_path(uri)
    try:
        return pkcs11.lib(path)
    except pkcs11.PKCS11Error as exc:
        if type(exc) is not pkcs11.PKCS11Error:  # loaded, but its C_Initialize failed (a CKR_ code)
            raise KeyMaterialError(
                f"{_WHERE}: the PKCS #11 library module-path={path} failed to start ({_describe(exc)}); check its "
                "configuration (SoftHSM2: the token directory named by SOFTHSM2_CONF exists and is readable)"
            ) from None
        reason = str(exc).rpartition(": ")[2] or _describe(exc)
        raise KeyMaterialError(
            f"{_WHERE}: module-path={path} cannot be loaded as a PKCS #11 library ({reason}); give the token "
            "vendor's PKCS #11 library"
        ) from None


def _matches(uri: Pkcs11Uri, lib: Any, slot: Any, token: Any) -> bool:
    def same(name: str, actual: str) -> bool:
        wanted = uri.text(name)
        return wanted is None or wanted == actual.rstrip()

    serial = token.serial.decode("utf-8", "replace") if isinstance(token.serial, bytes) else str(token.serial)
    version = uri.text("library-version")
    if version is not None:
        major, _, minor = version.partition(".")
        if tuple(lib.library_version) != (int(major), int(minor or 0)):
            return False
    slot_id = uri.text("slot-id")
    return (
        (slot_id is None or int(slot_id) == slot.slot_id)
        and same("token", token.label) and same("manufacturer", token.manufacturer_id)
        and same("model", token.model) and same("serial", serial)
        and same("slot-description", slot.slot_description) and same("slot-manufacturer", slot.manufacturer_id)
        and same("library-manufacturer", lib.manufacturer_id)
        and same("library-description", lib.library_description)
    )


def _find_token(uri: Pkcs11Uri, lib: Any) -> Any:
    pkcs11 = _pkcs11()
    present: list[str] = []
    found = []
    for slot in lib.get_slots(token_present=True):
        token = slot.get_token()
        if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
            continue  # an empty slot (SoftHSM2 always offers one)
        present.append(f"{token.label.rstrip()!r} (slot-id={slot.slot_id})")
        if _matches(uri, lib, slot, token):
            found.append(token)
    wanted = ";".join(f"{n}={uri.text(n)}" for n in uri.path if n not in ("object", "id", "type")) or "any token"
    if not found:
        has = f"the tokens present: {', '.join(present)}" if present else "the library shows no initialised token"
        raise KeyMaterialError(f"{_WHERE}: no token matches {wanted}; {has}; fix token= (or slot-id=) in the URI")
    if len(found) > 1:
        raise KeyMaterialError(
            f"{_WHERE}: {len(found)} tokens match {wanted} ({', '.join(present)}); add token=LABEL or "
            "serial=... to pick one"
        )
    return found[0]


def _pin(uri: Pkcs11Uri, pin: str | bytes | None) -> tuple[bytes | None, str]:
    """The user PIN and where it came from (for messages; never the PIN itself)."""
    if pin is not None and ("pin-value" in uri.query or "pin-source" in uri.query):
        raise KeyMaterialError(f"{_WHERE} gives the PIN already; do not also pass `password`")
    if pin is not None:
        return _utf8_pin(pin.encode("utf-8") if isinstance(pin, str) else pin, "`password`")
    if "pin-value" in uri.query:
        return _utf8_pin(uri.query["pin-value"], "pin-value")
    source = uri.text("pin-source")
    if source is None:
        return None, ""
    file = source[len("file:"):] if source.startswith("file:") else source
    if file.startswith("//"):  # file:///run/pin (an empty authority)
        file = file[2:]
        if not file.startswith("/"):
            raise KeyMaterialError(f"{_WHERE}: pin-source={source} names a remote host; use file:/path")
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", file):
        raise KeyMaterialError(f"{_WHERE}: pin-source={source}: only file: PIN sources are supported")
    data = read_small_file(file, f"{_WHERE}: the PIN file of pin-source,", limit=_MAX_PIN_FILE, error=KeyMaterialError)
    # `echo 1234 > pin` ends the file with a newline that is no part of the PIN.
    return _utf8_pin(data.removesuffix(b"\n").removesuffix(b"\r"), f"pin-source={source}")


def _utf8_pin(pin: bytes, where: str) -> tuple[bytes, str]:
    try:
        pin.decode("utf-8")  # PKCS #11 PINs are UTF-8 text (python-pkcs11 passes them as such)
    except UnicodeDecodeError:
        raise KeyMaterialError(f"{_WHERE}: the PIN from {where} is not UTF-8 text") from None
    return pin, where


def open_key(uri: str | Pkcs11Uri, *, pin: str | bytes | None = None) -> Pkcs11Key:
    """Log in to the token ``uri`` names and find its private key (the PIN from the URI, or ``pin``)."""
    parsed = uri if isinstance(uri, Pkcs11Uri) else Pkcs11Uri.parse(uri)
    pkcs11 = _pkcs11()
    lib = _load_library(parsed)
    secret, pin_from = _pin(parsed, pin)
    try:
        return Pkcs11Key(parsed, _find_token(parsed, lib), secret, pin_from)
    except pkcs11.PKCS11Error as exc:
        raise KeyMaterialError(f"{_WHERE} {parsed.shown()}: the token failed ({_describe(exc)})") from None


class Pkcs11Key:
    """A private key on a PKCS #11 token: it signs on the token; only the public key is ever read.

    Each use opens its own session and closes it (logging out) when done: a PKCS #11 login belongs to the
    whole process, so a session left logged in would let a later URI with a wrong PIN through, and make
    any other login to the token fail with "user already logged in".
    """

    def __init__(self, uri: Pkcs11Uri, token: Any, pin: bytes | None, pin_from: str) -> None:
        """Find the private key ``uri`` names on ``token`` and read its public half (use :func:`open_key`)."""
        pkcs11 = _pkcs11()
        self.uri = uri
        self.token_label: str = token.label.rstrip()
        self._token, self._pin, self._pin_from = token, pin, pin_from
        with self._session() as session:
            private = self._one_private_key(session)
            # What finds this key again in the next session (its own label and id, whatever the URI said).
            self._key_template = {
                pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                pkcs11.Attribute.LABEL: private[pkcs11.Attribute.LABEL],
                pkcs11.Attribute.ID: bytes(private[pkcs11.Attribute.ID] or b""),
            }
            self._certificate_der = self._certificate_value(session)
            self._algorithm, self._public = self._read_public_key(session, private)
        _log.info("opened PKCS #11 key %s on token %r (%s)", self._name(), self.token_label, self._algorithm.label)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        with _TOKEN_USE:
            yield from self._logged_in_session()

    def _logged_in_session(self) -> Iterator[Any]:
        pkcs11 = _pkcs11()
        try:
            # python-pkcs11 takes the PIN as text (PKCS #11 PINs are UTF-8).
            pin = self._pin.decode("utf-8") if self._pin is not None else None
            session = self._token.open(user_pin=pin) if pin is not None else self._token.open()
        except pkcs11.UserAlreadyLoggedIn:
            # This process is logged in already (the caller's own session): use that login, never end it.
            session = self._token.open()
        except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinInvalid):
            raise KeyMaterialError(
                f"{_WHERE}: the token {self.token_label!r} refused the PIN from {self._pin_from} (wrong PIN); give "
                "the token's user PIN (it is never shown)"
            ) from None
        except pkcs11.PinLocked:
            raise KeyMaterialError(
                f"{_WHERE}: the user PIN of the token {self.token_label!r} is locked (too many wrong PINs); have "
                "the security officer unlock it"
            ) from None
        try:
            yield session
        finally:
            with contextlib.suppress(pkcs11.PKCS11Error):  # a token that went away has nothing left to close
                session.close()

    def _name(self) -> str:
        parts = [f"object={self.uri.text('object')}" if "object" in self.uri.path else "",
                 f"id={_quote(self.uri.id, True)}" if self.uri.id is not None else ""]
        return ";".join(p for p in parts if p)

    def _template(self, object_class: Any) -> dict[Any, Any]:
        """The URI's object attributes (label, id) for a search."""
        pkcs11 = _pkcs11()
        attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: object_class}
        if "object" in self.uri.path:
            attrs[pkcs11.Attribute.LABEL] = self.uri.text("object")
        if self.uri.id is not None:
            attrs[pkcs11.Attribute.ID] = self.uri.id
        return attrs

    def _one_private_key(self, session: Any) -> Any:
        pkcs11 = _pkcs11()
        found = list(session.get_objects(self._template(pkcs11.ObjectClass.PRIVATE_KEY)))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise KeyMaterialError(
                f"{_WHERE}: {len(found)} private keys on the token {self.token_label!r} match {self._name()}; "
                "add id=%XX (or object=LABEL) to the URI to pick one"
            )
        if self._pin is None:
            raise KeyMaterialError(
                f"{_WHERE}: no private key matches {self._name()} on the token {self.token_label!r}, and the URI "
                "gives no PIN (private keys are only visible after login); add pin-source=file:/path/to/pin "
                "or pin-value=... to its query part"
            )
        keys = [
            f"object={k[pkcs11.Attribute.LABEL]} id={_quote(bytes(k[pkcs11.Attribute.ID]), True) or '-'}"
            for k in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})
        ]
        has = f"its private keys: {', '.join(sorted(keys))}" if keys else "it holds no private key"
        raise KeyMaterialError(
            f"{_WHERE}: no private key matches {self._name()} on the token {self.token_label!r} ({has}); fix "
            "object= or id= in the URI"
        )

    def _read_public_key(self, session: Any, private: Any) -> tuple[Algorithm, PublicKey]:
        pkcs11 = _pkcs11()
        key_type = private[pkcs11.Attribute.KEY_TYPE]
        if key_type not in (pkcs11.KeyType.EC, pkcs11.KeyType.EC_EDWARDS):
            kind = getattr(key_type, "name", str(key_type))
            raise KeyMaterialError(
                f"{_WHERE}: the private key {self._name()} is a {kind} key; use an EC P-256, P-384 or P-521 "
                "key, or an Ed25519 key"
            )
        public = self._public_object(session)
        if public is not None:
            key = _public_key(public[pkcs11.Attribute.EC_PARAMS], public[pkcs11.Attribute.EC_POINT], self._name())
        else:
            cert = self.certificate()
            if cert is None:
                raise KeyMaterialError(
                    f"{_WHERE}: the token {self.token_label!r} has no public key object (nor certificate) for "
                    f"{self._name()}; store the public key on the token with the private key's id and label"
                )
            key = cert.public_key()  # type: ignore[assignment]
        algorithm = _algorithms.of_key(key, f"the token's key {self._name()}")
        return algorithm, key

    def _public_object(self, session: Any) -> Any | None:
        return self._paired(session, _pkcs11().ObjectClass.PUBLIC_KEY)

    def _certificate_value(self, session: Any) -> bytes | None:
        """CKA_VALUE of the certificate stored with this key, if there is one."""
        found = self._paired(session, _pkcs11().ObjectClass.CERTIFICATE)
        return None if found is None else bytes(found[_pkcs11().Attribute.VALUE])

    def _paired(self, session: Any, object_class: Any) -> Any | None:
        """The one object of ``object_class`` that goes with the private key: the same CKA_ID (what pairs a
        key's objects), else the same label; never an unrelated one."""
        pkcs11 = _pkcs11()
        templates = [
            {pkcs11.Attribute.CLASS: object_class, attribute: self._key_template[attribute]}
            for attribute in (pkcs11.Attribute.ID, pkcs11.Attribute.LABEL)
            if self._key_template[attribute]
        ]
        for template in templates:
            found = list(session.get_objects(template))
            if len(found) == 1:
                return found[0]
        return None

    def public_key(self) -> PublicKey:
        """The public key read from the token."""
        return self._public

    @property
    def algorithm(self) -> Algorithm:
        """The key's algorithm (a row of :mod:`model_signing.keymaterial.algorithms`)."""
        return self._algorithm

    def sign(self, message: bytes) -> bytes:
        """The token's signature over ``message``: ECDSA (DER) over its digest, or PureEdDSA over the message."""
        pkcs11 = _pkcs11()
        try:
            with self._session() as session:
                found = list(session.get_objects(self._key_template))
                if len(found) != 1:
                    raise _Gone("the key is no longer on the token")
                if self._algorithm.hash is None:
                    signature = bytes(found[0].sign(message, mechanism=pkcs11.Mechanism.EDDSA))
                else:
                    digest = hashlib.new(self._algorithm.hash, message).digest()
                    signature = _der_signature(bytes(found[0].sign(digest, mechanism=pkcs11.Mechanism.ECDSA)))
        except pkcs11.UserNotLoggedIn:
            raise SigningError(
                f"{_WHERE}: the token {self.token_label!r} signs with {self._name()} only after a login; add "
                "pin-source=file:/path/to/pin or pin-value=... to the URI's query part"
            ) from None
        except (pkcs11.PKCS11Error, KeyMaterialError, _Gone) as exc:
            detail = str(exc) if isinstance(exc, _Gone) else _describe(exc) if isinstance(exc, pkcs11.PKCS11Error) \
                else "it no longer accepts the login"
            raise SigningError(
                f"{_WHERE}: the token {self.token_label!r} could not sign with {self._name()} ({detail}): it was "
                "removed, or its storage went away, after the key was opened; reconnect it and sign again"
            ) from None
        # Never hand out a signature that the bundle's key hint would not verify (a public object that
        # does not pair with the private key would otherwise give signatures nobody can check).
        if not self._algorithm.verifies(self._public, signature, message):
            raise SigningError(
                f"{_WHERE}: the token's signature with {self._name()} does not verify with the public key read "
                "from the token; its public key object does not belong to the private key"
            )
        return signature

    def certificate(self) -> x509.Certificate | None:
        """The X.509 certificate the token holds for this key (same id, else same label), if any."""
        from cryptography import x509

        if self._certificate_der is None:
            return None
        try:
            return x509.load_der_x509_certificate(self._certificate_der)
        except ValueError:
            raise KeyMaterialError(
                f"{_WHERE}: the certificate for {self._name()} on the token {self.token_label!r} is not a DER "
                "X.509 certificate"
            ) from None


class _Gone(Exception):
    """The key could not be found again when it was time to sign."""


def _der_signature(raw: bytes) -> bytes:
    """PKCS #11's ECDSA signature (``r || s``, each as long as the curve's order) as DER (RFC 3279)."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not raw or len(raw) % 2:
        raise SigningError(f"{_WHERE}: the token returned a malformed ECDSA signature ({len(raw)} bytes)")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def _octets(point: bytes) -> bytes:
    """CKA_EC_POINT: a DER OCTET STRING as the standard says, or the raw point some tokens give."""
    from asn1crypto.core import OctetString

    try:
        inner = OctetString.load(point, strict=True)
    except ValueError:
        return point
    return bytes(inner.native)


def _public_key(params: bytes, point: bytes, name: str) -> PublicKey:
    """The public key from CKA_EC_PARAMS (a named curve's OID, or Ed25519's) and CKA_EC_POINT."""
    from asn1crypto.core import ObjectIdentifier, PrintableString
    from asn1crypto.core import load as asn1_load
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        parsed = asn1_load(bytes(params), strict=True)
    except ValueError:
        parsed = None
    curve = None
    if isinstance(parsed, ObjectIdentifier):
        curve = "ed25519" if parsed.dotted == _ED25519_OID else _EC_CURVES.get(parsed.dotted)
    elif isinstance(parsed, PrintableString) and str(parsed.native).lower() in _ED25519_NAMES:
        curve = "ed25519"
    if curve is None:
        raise KeyMaterialError(
            f"{_WHERE}: the token's key {name} is on a curve this tool does not sign with; use an EC P-256, P-384 "
            "or P-521 key, or an Ed25519 key"
        )
    raw = _octets(bytes(point))
    try:
        if curve == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return ec.EllipticCurvePublicKey.from_encoded_point(_algorithms._curve(curve), raw)
    except ValueError:
        raise KeyMaterialError(f"{_WHERE}: the token's public key for {name} is malformed (CKA_EC_POINT)") from None

