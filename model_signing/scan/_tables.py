"""The reviewed tables behind the verdicts: safe pickle globals, code-execution gadgets, TF ops.

Change these tables only with a reason per row (for gadgets: what the callable can do).  Everything a
pickle imports that is in neither table is an "unknown global" (medium): the verdict is allowlist-first.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from model_signing.scan._model import Severity

# --- safe globals --------------------------------------------------------------------------------------
# What torch.load(weights_only=True) accepts (torch 2.13's torch._weights_only_unpickler allowlist,
# reviewed and copied here by hand: the scanner never imports torch), numpy array reconstruction, and the
# builtins that plain-data pickles use.  Each entry is safe to import *and* to call with any arguments.

_TORCH_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_TORCH_STORAGE_ONLY = ("ComplexDouble", "ComplexFloat", "QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8")
_TORCH_DTYPES = (
    "bfloat16", "bits16", "bits1x8", "bits2x4", "bits4x2", "bits8", "bool", "complex128", "complex32", "complex64",
    "float16", "float32", "float4_e2m1fn_x2", "float64", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
    "float8_e5m2fnuz", "float8_e8m0fnu", "int1", "int16", "int2", "int3", "int32", "int4", "int5", "int6", "int64",
    "int7", "int8", "qint32", "qint8", "quint2x4", "quint4x2", "quint8", "uint1", "uint16", "uint2", "uint3",
    "uint32", "uint4", "uint5", "uint6", "uint64", "uint7", "uint8"
)
_TORCH_QSCHEMES = (
    "per_channel_affine", "per_channel_affine_float_qparams", "per_channel_symmetric", "per_tensor_affine",
    "per_tensor_symmetric"
)
_TORCH_REBUILD = (
    "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_tensor",
    "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_wrapper_subclass"
)


def _torch_safe() -> set[str]:
    names = {
        "torch.Size", "torch.Tensor", "torch.device", "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout", "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
        "torch._tensor._rebuild_from_type_v2",
        # layouts and memory formats, which rebuilt tensors name
        "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc", "torch.sparse_bsr",
        "torch.sparse_bsc", "torch.contiguous_format", "torch.channels_last", "torch.channels_last_3d",
        "torch.preserve_format",
    }
    names.update(f"torch._utils.{n}" for n in _TORCH_REBUILD)
    names.update(f"torch.{n}" for n in _TORCH_DTYPES + _TORCH_QSCHEMES)
    for prefix in ("torch", "torch.cuda"):
        names.update(f"{prefix}.{t}Storage" for t in _TORCH_TENSOR_TYPES)
        names.update(f"{prefix}.{t}Tensor" for t in _TORCH_TENSOR_TYPES)
    names.update(f"torch.{t}Storage" for t in _TORCH_STORAGE_ONLY)
    names.update(f"torch.cuda.{t}Storage" for t in ("ComplexDouble", "ComplexFloat"))
    names.update(f"{p}.sparse.{t}Tensor" for p in ("torch", "torch.cuda") for t in _TORCH_TENSOR_TYPES if t != "Bool")
    return names


SAFE_GLOBALS: frozenset[str] = frozenset(
    _torch_safe()
    | {
        # containers and scalars: constructing them runs no user code
        "collections.OrderedDict", "collections.Counter", "collections.defaultdict", "collections.deque",
        "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes", "builtins.complex",
        "builtins.slice", "builtins.range", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.str",
        "builtins.int", "builtins.float", "builtins.bool", "builtins.object",
        # protocol 0-2 pickles spell bytes as _codecs.encode(str, "latin1")
        "_codecs.encode",
        # protocol 0/1 pickles of objects go through copyreg; the class it is given is imported (and
        # judged) by its own GLOBAL
        "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
        # numpy array and scalar reconstruction (numpy 1 and 2 spellings)
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.ndarray", "numpy.dtype", "numpy.ma.core._mareconstruct",
        # joblib's array placeholder: a data class; the array bytes that follow it are skipped, not loaded
        "joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
# numpy 2 pickles dtypes through their DType classes (numpy.dtypes.Float32DType, ...): data classes too.
SAFE_MODULE_PREFIXES: tuple[str, ...] = ("numpy.dtypes.",)

# --- gadgets -------------------------------------------------------------------------------------------
# (module or module.name) -> (severity, why).  A "module" row covers the module, its submodules and every
# name in them.  Matching also applies to every dotted suffix of a name, so "torch.serialization.os.system"
# (a protocol 4 dotted name walking module attributes) is os.system.

_CRIT = Severity.CRITICAL
_HIGH = Severity.HIGH

GADGET_MODULES: Mapping[str, tuple[Severity, str]] = MappingProxyType({
    "os": (_CRIT, "runs commands and touches files (os.system, os.popen, os.exec*)"),
    "posix": (_CRIT, "os's implementation on POSIX (posix.system)"),
    "nt": (_CRIT, "os's implementation on Windows (nt.system)"),
    "subprocess": (_CRIT, "runs commands"),
    "_posixsubprocess": (_CRIT, "subprocess's fork/exec primitive"),
    "pty": (_CRIT, "pty.spawn runs commands"),
    "commands": (_CRIT, "Python 2 command runner"),
    "popen2": (_CRIT, "Python 2 command runner"),
    "platform": (_HIGH, "platform.popen and friends run commands"),
    "shutil": (_CRIT, "copies, moves and deletes files; shutil.rmtree"),
    "sys": (_CRIT, "interpreter state: sys.modules, sys.settrace, exit hooks"),
    "socket": (_CRIT, "network access"),
    "ctypes": (_CRIT, "calls native code"),
    "_ctypes": (_CRIT, "calls native code"),
    "cffi": (_CRIT, "calls native code"),
    "marshal": (_CRIT, "builds code objects from bytes"),
    "types": (_CRIT, "types.FunctionType/CodeType build functions from code"),
    "code": (_CRIT, "code.InteractiveInterpreter runs source"),
    "codeop": (_CRIT, "compiles source"),
    "runpy": (_CRIT, "runs modules and files as __main__"),
    "pip": (_CRIT, "pip.main installs (and runs) packages"),
    "pydoc": (_CRIT, "pydoc.locate imports anything by name; pydoc.pipepager runs commands"),
    "importlib": (_CRIT, "imports anything by name"),
    "imp": (_CRIT, "imports anything by name"),
    "pkgutil": (_CRIT, "pkgutil.resolve_name imports anything by name"),
    "zipimport": (_CRIT, "imports code from archives"),
    "site": (_CRIT, "site.addsitedir runs .pth files"),
    "webbrowser": (_CRIT, "opens URLs with external programs"),
    "pickle": (_CRIT, "loads a nested pickle with no restrictions"),
    "_pickle": (_CRIT, "loads a nested pickle with no restrictions"),
    "cPickle": (_CRIT, "loads a nested pickle with no restrictions"),
    "dill": (_CRIT, "loads nested pickles and code"),
    "cloudpickle": (_CRIT, "rebuilds functions from code"),
    "shelve": (_CRIT, "opens pickle databases"),
    "multiprocessing": (_CRIT, "starts processes"),
    "concurrent": (_CRIT, "runs callables in workers"),
    "threading": (_CRIT, "threading.Thread(target=...) runs callables"),
    "_thread": (_CRIT, "starts threads running callables"),
    "asyncio": (_CRIT, "asyncio.create_subprocess_* runs commands"),
    "signal": (_HIGH, "installs signal handlers"),
    "io": (_CRIT, "io.open reads and writes files"),
    "_io": (_CRIT, "io's implementation: reads and writes files"),
    "pathlib": (_HIGH, "Path objects read, write and delete files"),
    "tempfile": (_HIGH, "creates files"),
    "glob": (_HIGH, "lists files"),
    "fileinput": (_HIGH, "reads files"),
    "tarfile": (_HIGH, "extracts archives onto the filesystem"),
    "zipfile": (_HIGH, "extracts archives onto the filesystem"),
    "timeit": (_CRIT, "timeit.timeit runs source"),
    "cProfile": (_CRIT, "cProfile.run runs source"),
    "profile": (_CRIT, "profile.run runs source"),
    "pdb": (_CRIT, "pdb.run runs source"),
    "bdb": (_CRIT, "bdb.Bdb.run runs source"),
    "trace": (_CRIT, "trace.Trace.run runs source"),
    "doctest": (_CRIT, "doctest.debug_script runs source"),
    "idlelib": (_CRIT, "runs source"),
    "distutils": (_CRIT, "distutils.spawn runs commands"),
    "setuptools": (_CRIT, "builds and runs code"),
    "ensurepip": (_CRIT, "installs packages"),
    "venv": (_HIGH, "creates environments, runs pip"),
    "urllib": (_HIGH, "network access"),
    "http": (_HIGH, "network access"),
    "httplib": (_HIGH, "network access"),
    "requests": (_HIGH, "network access"),
    "ftplib": (_HIGH, "network access"),
    "smtplib": (_HIGH, "network access"),
    "telnetlib": (_HIGH, "network access"),
    "xmlrpc": (_HIGH, "network access and remote calls"),
    "logging": (_HIGH, "logging.config.listen accepts and runs configuration"),
    "operator": (_HIGH, "operator.attrgetter/methodcaller reach any attribute or method"),
    "functools": (_HIGH, "functools.partial/reduce wrap callables for later calls "
                         "(partial(torch.load, weights_only=False) loads a nested pickle)"),
    "torch.hub": (_CRIT, "downloads and runs code"),
    "torch.package": (_CRIT, "loads packaged code"),
    "torch.utils.cpp_extension": (_CRIT, "compiles and loads native code"),
    "torch._inductor": (_CRIT, "compiles and runs generated code"),
    "torch._dynamo": (_CRIT, "compiles and runs generated code"),
    "torch.fx": (_CRIT, "torch.fx.graph_module rebuilds modules by running generated source"),
    "torch.jit": (_HIGH, "loads TorchScript programs"),
    "numpy.testing": (_CRIT, "numpy.testing's runstring runs source"),
    "numpy.f2py": (_CRIT, "compiles and runs code"),
    "numpy.distutils": (_CRIT, "runs commands"),
    "numpy.ctypeslib": (_CRIT, "loads native libraries"),
    "pandas.io.pickle": (_CRIT, "loads nested pickles"),
    "keras.src.saving": (_HIGH, "loads nested models"),
})

GADGET_NAMES: Mapping[str, tuple[Severity, str]] = MappingProxyType({
    "builtins.eval": (_CRIT, "runs source"),
    "builtins.exec": (_CRIT, "runs source"),
    "builtins.execfile": (_CRIT, "runs a file (Python 2)"),
    "builtins.compile": (_CRIT, "builds code objects"),
    "builtins.getattr": (_CRIT, "reaches any attribute (getattr(os, 'system'))"),
    "builtins.setattr": (_CRIT, "changes any attribute"),
    "builtins.delattr": (_CRIT, "deletes any attribute"),
    "builtins.__import__": (_CRIT, "imports anything by name"),
    "builtins.open": (_CRIT, "reads and writes files"),
    "builtins.file": (_CRIT, "reads and writes files (Python 2)"),
    "builtins.input": (_HIGH, "reads the terminal"),
    "builtins.breakpoint": (_CRIT, "starts a debugger"),
    "builtins.globals": (_CRIT, "reaches the interpreter's globals"),
    "builtins.locals": (_CRIT, "reaches the interpreter's locals"),
    "builtins.vars": (_CRIT, "reaches any namespace"),
    "builtins.apply": (_CRIT, "calls anything (Python 2)"),
    "builtins.reload": (_CRIT, "re-imports modules (Python 2)"),
    "builtins.help": (_HIGH, "runs pydoc, which pages through external programs"),
    "builtins.type": (_HIGH, "builds classes at load time"),
    "builtins.super": (_HIGH, "reaches parent methods"),
    "builtins.memoryview": (_HIGH, "raw memory views"),
    "torch.load": (_CRIT, "loads a nested checkpoint; with weights_only=False that runs its pickle"),
    "torch.serialization.load": (_CRIT, "loads a nested checkpoint; with weights_only=False that runs its pickle"),
    "torch.serialization._load": (_CRIT, "loads a nested checkpoint without the weights_only checks"),
    "torch.serialization._legacy_load": (_CRIT, "loads a nested checkpoint without the weights_only checks"),
    "torch._C._jit_script_compile": (_CRIT, "compiles TorchScript source"),
    "numpy.load": (_CRIT, "loads nested arrays; with allow_pickle that runs their pickle"),
    "numpy.lib.npyio.load": (_CRIT, "loads nested arrays; with allow_pickle that runs their pickle"),
    "numpy.fromfile": (_HIGH, "reads files"),
    "numpy.save": (_HIGH, "writes files"),
    "numpy.savetxt": (_HIGH, "writes files"),
    "pandas.read_pickle": (_CRIT, "loads nested pickles"),
    "joblib.load": (_CRIT, "loads nested pickles"),
    "joblib.numpy_pickle.load": (_CRIT, "loads nested pickles"),
    "keras.models.load_model": (_HIGH, "loads nested models"),
    "uuid._get_command_stdout": (_CRIT, "runs commands"),
    "uuid._popen": (_CRIT, "runs commands"),
})


def _module_match(dotted: str) -> tuple[Severity, str, str] | None:
    """The gadget row matching ``dotted`` (``a.b.c``) as a name or inside a module row, if any."""
    row = GADGET_NAMES.get(dotted)
    if row is not None:
        return row[0], row[1], dotted
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        mrow = GADGET_MODULES.get(module)
        if mrow is not None:
            return mrow[0], mrow[1], module
    return None


# Cached: a checkpoint's pickle imports the same few globals hundreds of times, and the tables are
# read-only (mapping proxies and frozensets), so a verdict never goes stale.  Bounded.
@functools.lru_cache(maxsize=4096)
def classify(module: str, name: str) -> tuple[Severity, str] | None:
    """Judge the global ``module.name``: ``None`` if safe, else (severity, reason).

    Unknown globals are medium; gadgets take their row's severity.  Dotted names are walked as pickle
    protocol 4 walks them (attribute by attribute), so a gadget reached through a safe-looking module
    is still found; ``__builtins__`` inside a dotted path stands for the builtins module.
    """
    full = f"{module}.{name}"
    parts = [("builtins" if p == "__builtins__" else p) for p in full.split(".")]
    worst: tuple[Severity, str] | None = None
    # The module is an import path; each part of the name is an attribute walked from it, and any of
    # those objects may be a module itself (torch.serialization's "os"): judge every walk from there.
    starts = [0, *range(module.count(".") + 1, len(parts) - 1)]
    for start in starts:
        hit = _module_match(".".join(parts[start:]))
        if hit is not None and (worst is None or hit[0] > worst[0]):
            how = "" if start == 0 else f" (reached as {full})"
            worst = (hit[0], f"{hit[2]}: {hit[1]}{how}")
    if worst is not None:
        return worst
    if full in SAFE_GLOBALS or any(full.startswith(p) for p in SAFE_MODULE_PREFIXES):
        return None
    if parts[0] == "builtins":
        # the builtins module is mostly gadgets: what is not known safe there is treated as one
        return _HIGH, "a builtin outside the table of safe builtins"
    return Severity.MEDIUM, "not in the table of globals known safe for model weights"


# --- TensorFlow ops -----------------------------------------------------------------------------------
# Ops in a SavedModel graph (or its function library) that reach outside the tensor world.  The saver's
# own ops (SaveV2, RestoreV2, ShardedFilename, MergeV2Checkpoints, StringJoin) are in every SavedModel
# and are not listed.
TF_OPS: dict[str, tuple[Severity, str]] = {
    "PyFunc": (_CRIT, "calls a Python function of the loading process"),
    "PyFuncStateless": (_CRIT, "calls a Python function of the loading process"),
    "EagerPyFunc": (_CRIT, "calls a Python function of the loading process"),
    "WriteFile": (_HIGH, "writes a file"),
    "ReadFile": (Severity.MEDIUM, "reads a file"),
    "MatchingFiles": (Severity.MEDIUM, "lists files"),
    "ImmutableConst": (Severity.MEDIUM, "memory-maps a file"),
    "CreateSummaryFileWriter": (Severity.MEDIUM, "writes files"),
    "WriteSummary": (Severity.MEDIUM, "writes files"),
    "DebugIdentityV2": (Severity.MEDIUM, "writes debug dumps to files"),
    "PrintV2": (Severity.LOW, "prints, possibly to a file"),
    "Save": (Severity.LOW, "TF1 saver op writing tensors to a file"),
    "SaveSlices": (Severity.LOW, "TF1 saver op writing tensors to a file"),
}
