"""Runners: one per tool, signing method and hashing mode; each turns an operation into a command line.

Operations: ``sign``, ``verify`` and ``digest`` (hashing alone, to separate hashing from fixed
overhead).  This project is driven through ``python main.py`` (its real CLI); the peer
``model-signing==1.1.1`` through its own CLI in its own venv (``python -I``), or, for the modes its CLI
cannot select (shards, blake3) and for hashing alone, through a few lines of its public Python API run in
that venv.  A runner whose command is missing reports why (:meth:`Runner.unavailable`), and the harness
shows it as "n/a" with that reason instead of failing.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OURS = "modelseal"
PEER = "model-signing 1.1.1"
OPS = ("sign", "verify", "digest")
OUR_MODES = ("files", "shards", "blake3")
PEER_MODES = ("files", "shards", "blake3")
METHODS = ("key", "sigstore")
ROOT = Path(__file__).resolve().parents[2]


def limit_for(mode: str) -> tuple[str, str]:
    """The raw read+hash limit a hashing mode is held to: ``(algorithm, split)`` of a :class:`LimitRun`.

    ``files`` lists one sha256 per file, computed by one sequential hasher: no tool can split a file over
    processes, so its bound is the whole-files limit.  ``shards`` lists one sha256 per shard, each hashed
    by one sequential hasher: the shards limit, the files cut at the run's shard size (a file under one
    shard is one unit of work, however many processes there are).  ``blake3`` is files serialization too,
    but a blake3 digest is a tree of independent chunks that both tools hash with several threads
    (``max_threads``), so one file does spread over the cores: the range limit, with blake3.
    """
    if mode in ("files", "shards"):
        return "sha256", mode
    return ("blake3" if mode == "blake3" else "sha256"), "ranges"


@dataclass(frozen=True)
class KeylessMaterial:
    """What keyless runs need: a trust config, an identity, its issuer, and a token source."""

    trust_config: Path | None  # None: the public-good instance
    identity: str
    issuer: str
    #: returns a fresh identity token, or None to let each tool find one (ambient / browser flow)
    token: Callable[[], str | None]


@dataclass(frozen=True)
class Context:
    """Everything runners need besides the model."""

    python: str
    peer_python: Path | None
    private_key: Path
    public_key: Path
    keyless: KeylessMaterial | None
    shard_size: int | None = None


@dataclass(frozen=True)
class Runner:
    """A tool + signing method + hashing mode."""

    tool: str
    method: str
    mode: str

    @property
    def label(self) -> str:
        """Short name used in reports, e.g. ``modelseal key shards``."""
        return f"{self.tool} {self.method} {self.mode}"

    @property
    def hash_type(self) -> str:
        """The hash algorithm this runner's mode uses."""
        return "blake3" if self.mode == "blake3" else "sha256"

    def unavailable(self, ctx: Context, op: str) -> str | None:
        """Why this runner cannot run ``op`` here (for "n/a"), or None."""
        raise NotImplementedError

    def command(self, op: str, model: Path, signature: Path, ctx: Context) -> list[str]:
        """The command line for ``op`` on ``model`` with ``signature``."""
        raise NotImplementedError


# --- this project ---------------------------------------------------------------------------------


@functools.cache
def _our_help(python: str, *words: str) -> tuple[int, str]:
    proc = subprocess.run([python, "main.py", *words, "--help"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300"}, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@dataclass(frozen=True)
class OurRunner(Runner):
    """``python main.py sign|verify|digest ...``."""

    def _hash_args(self, ctx: Context) -> list[str]:
        if self.mode == "files":
            return ["--serialization", "files", "--hash", "sha256"]
        if self.mode == "blake3":
            return ["--serialization", "files", "--hash", "blake3"]
        size = ["--shard-size", str(ctx.shard_size)] if ctx.shard_size else []
        return ["--serialization", "shards", "--hash", "sha256", *size]

    def _words(self, op: str) -> tuple[str, ...]:
        return ("digest",) if op == "digest" else (op, self.method)

    def unavailable(self, ctx: Context, op: str) -> str | None:
        """Probe ``main.py <op> <method> --help`` for the options this runner passes."""
        words = self._words(op)
        if self.method == "sigstore" and ctx.keyless is None and op != "digest":
            return "no keyless setup (local Sigstore instance unavailable)"
        code, text = _our_help(ctx.python, *words)
        if code != 0:
            last = (text.strip().splitlines() or ["no output"])[-1]
            return f"`main.py {' '.join(words)}` is not available yet ({last.strip()[:120]})"
        needed = {"sign": ["--signature", "--serialization", "--hash", "--overwrite"],
                  "verify": ["--signature"], "digest": ["--serialization", "--hash"]}[op]
        needed += {"key": {"sign": ["--private-key"], "verify": ["--public-key"]},
                   "sigstore": {"sign": ["--identity-token", "--trust-config"],
                                "verify": ["--identity", "--identity-provider", "--trust-config"]}
                   }[self.method].get(op, [])
        missing = [opt for opt in needed if opt not in text]
        if missing:
            return f"`main.py {' '.join(words)}` lacks {', '.join(missing)}"
        return None

    def _no_cache(self, ctx: Context, op: str) -> list[str]:
        # Every run hashes every byte, as the peer does: a digest cache would time a re-sign instead
        # (that is benchmarks/bench_resign.py's subject).  Older checkouts have no cache and no flag.
        return ["--no-digest-cache"] if "--no-digest-cache" in _our_help(ctx.python, *self._words(op))[1] else []

    def command(self, op: str, model: Path, signature: Path, ctx: Context) -> list[str]:
        """Our CLI's command line (the progress bar is off: stderr is a file; no digest cache)."""
        base = [ctx.python, "main.py"]
        if op == "digest":
            return [*base, "digest", str(model), *self._hash_args(ctx), "--quiet", *self._no_cache(ctx, op)]
        if op == "sign":
            cmd = [*base, "sign", self.method, str(model), "--signature", str(signature), "--overwrite",
                   *self._hash_args(ctx), "--quiet", *self._no_cache(ctx, op)]
            if self.method == "key":
                return [*cmd, "--private-key", str(ctx.private_key)]
            assert ctx.keyless is not None
            token = ctx.keyless.token()
            cmd += ["--identity-token", token] if token else []
            return cmd + (["--trust-config", str(ctx.keyless.trust_config)] if ctx.keyless.trust_config else [])
        cmd = [*base, "verify", self.method, str(model), "--signature", str(signature), "--quiet"]
        if self.method == "key":
            return [*cmd, "--public-key", str(ctx.public_key)]
        assert ctx.keyless is not None
        cmd += ["--identity", ctx.keyless.identity, "--identity-provider", ctx.keyless.issuer]
        return cmd + (["--trust-config", str(ctx.keyless.trust_config)] if ctx.keyless.trust_config else [])


# --- the peer -------------------------------------------------------------------------------------

#: the peer's public API for what its CLI cannot do: shards and blake3 modes (its CLI signs files/sha256 only,
#: and its CLI verifier guesses the settings of shards/blake3 bundles wrongly), and hashing alone
PEER_API_SCRIPT = """
import sys
from pathlib import Path
from model_signing import hashing, signing, verifying
op, method, mode, model, sig = sys.argv[1:6]
extra = dict(a.split("=", 1) for a in sys.argv[6:])
h = hashing.Config().set_ignored_paths(paths=[sig], ignore_git_paths=True)
if mode == "shards":
    h.use_shard_serialization(hashing_algorithm="sha256", **({"shard_size": int(extra["shard_size"])}
                                                               if "shard_size" in extra else {}))
elif mode == "blake3":
    h.use_file_serialization(hashing_algorithm="blake3")
if op == "digest":
    h.hash(model)
elif op == "sign":
    s = signing.Config().set_hashing_config(h)
    if method == "key":
        s.use_elliptic_key_signer(private_key=extra["private_key"])
    else:
        tc = extra.get("trust_config")
        s.use_sigstore_signer(identity_token=extra.get("token"), trust_config=Path(tc) if tc else None)
    s.sign(model, sig)
else:
    # explicit settings: the peer's CLI guesses them from the manifest and gets shards/blake3 wrong
    v = verifying.Config().set_hashing_config(h)
    if method == "key":
        v.use_elliptic_key_verifier(public_key=extra["public_key"])
    else:
        tc = extra.get("trust_config")
        v.use_sigstore_verifier(identity=extra["identity"], oidc_issuer=extra["issuer"],
                                trust_config=Path(tc) if tc else None)
    v.verify(model, sig)
"""


@dataclass(frozen=True)
class PeerRunner(Runner):
    """The peer's CLI in files mode; its Python API (same venv) for shards, blake3 and digest."""

    def unavailable(self, ctx: Context, op: str) -> str | None:
        """The peer needs its venv, and keyless needs a setup."""
        if ctx.peer_python is None:
            return "peer venv unavailable"
        if self.method == "sigstore" and ctx.keyless is None and op != "digest":
            return "no keyless setup (local Sigstore instance unavailable)"
        return None

    def _api(self, op: str, model: Path, signature: Path, ctx: Context) -> list[str]:
        assert ctx.peer_python is not None
        extra = {"private_key": str(ctx.private_key), "public_key": str(ctx.public_key)}
        if ctx.shard_size:
            extra["shard_size"] = str(ctx.shard_size)
        if self.method == "sigstore" and ctx.keyless is not None and op != "digest":
            token = ctx.keyless.token() if op == "sign" else None
            if token:
                extra["token"] = token
            extra.update(identity=ctx.keyless.identity, issuer=ctx.keyless.issuer)
            if ctx.keyless.trust_config:
                extra["trust_config"] = str(ctx.keyless.trust_config)
        return [str(ctx.peer_python), "-I", "-c", PEER_API_SCRIPT, op, self.method, self.mode, str(model),
                str(signature), *(f"{k}={v}" for k, v in extra.items())]

    def command(self, op: str, model: Path, signature: Path, ctx: Context) -> list[str]:
        """The peer CLI (files mode) or its API script."""
        if op == "digest" or self.mode != "files":
            return self._api(op, model, signature, ctx)
        assert ctx.peer_python is not None
        cli = [str(ctx.peer_python), "-I", "-m", "model_signing"]
        if op == "sign" and self.method == "key":
            return [*cli, "sign", "key", "--private_key", str(ctx.private_key), "--signature", str(signature),
                    str(model)]
        if op == "verify" and self.method == "key":
            return [*cli, "verify", "key", "--public_key", str(ctx.public_key), "--signature", str(signature),
                    str(model)]
        assert ctx.keyless is not None
        tc = ["--trust_config", str(ctx.keyless.trust_config)] if ctx.keyless.trust_config else []
        if op == "sign":
            token = ctx.keyless.token()
            auth = ["--identity_token", token] if token else ["--use_ambient_credentials"]
            return [*cli, "sign", "sigstore", *tc, *auth, "--signature", str(signature), str(model)]
        return [*cli, "verify", "sigstore", *tc, "--identity", ctx.keyless.identity, "--identity_provider",
                ctx.keyless.issuer, "--signature", str(signature), str(model)]


def build_runners(methods: list[str], our_modes: list[str], peer_modes: list[str]) -> list[Runner]:
    """All runners for the chosen methods and modes, this project first."""
    runners: list[Runner] = []
    for method in methods:
        runners += [OurRunner(OURS, method, mode) for mode in our_modes]
        runners += [PeerRunner(PEER, method, mode) for mode in peer_modes]
    return runners
