"""Checkpoints through orbax (docs/design.md, decision 5); the only jaxdl module that imports orbax.

A checkpoint is one orbax step directory with two items:

- `tree`: a pytree of arrays (the TrainState, the running metric sums of the epoch, arrays that
  callbacks keep) written with `StandardSave`, restored with `StandardRestore` against an
  abstract tree (`jax.ShapeDtypeStruct`s with shardings), so it loads onto any device mesh;
- `meta`: a JSON document (`JsonSave`): the data-iterator position, callback state, the model's
  fingerprint, and for every array leaf its shape, dtype and a 32-bit digest of its bytes.

Typed PRNG keys (`jax.random.key`, e.g. the TrainState's `rng`) are stored as their raw key data
(`jax.random.key_data`: uint32, the key's shape plus the implementation's key shape) and made
keys again on restore (`jax.random.wrap_key_data` with the target's key dtype), so a key
restores bit for bit and the files hold only plain arrays.

The digests and the NaN/inf check run on the devices, as one compiled reduction over each
(possibly sharded) array, so that no host ever needs a whole array: multi-host FSDP states are
saved and verified by every process together. The digest of an array is the wrap-around uint32
sum over its elements of `bits(x_i) * (2 i + 1) * 0x9E3779B1` (bits: the element's bytes as
unsigned integers; 64-bit elements as two words): integer addition is associative, so the value
does not depend on the sharding or the mesh it is computed on, and flipping any single bit
changes it. Checkpoints written before this scheme carry CRC-32s (`checksums`) and are still
verified that way.

What this module guarantees, and the fault it answers:

- a save is atomic (orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it when complete);
  partial directories from a killed writer are removed when the directory is opened again;
- a tree holding NaN or inf is never written (`NonFiniteError`);
- `restore` tries the newest step first; a step that cannot be read, or whose bytes disagree with
  the recorded checksums (a truncated or corrupted file), is moved aside to `<dir>.corrupt/` with
  a warning and the previous one is tried, so nothing is loaded silently wrong;
- a checkpoint of another model, or with another shape or dtype for any leaf, raises
  `CheckpointMismatchError` listing the differences (orbax would otherwise cast dtypes);
- a directory holding symbolic links that point outside it, or names containing '..', is
  refused before anything is read (`UnsafeCheckpointError`); a checkpoint directory that is
  itself a symbolic link is refused too, so nothing is written outside the workdir;
- a save that runs out of disk space raises `CheckpointDiskFullError` naming the directory and
  the bytes the checkpoint needs; the previous checkpoints are untouched and stay restorable;
- when every checkpoint is unusable, `restore` warns that training starts from scratch
  (`CorruptCheckpointWarning`) and returns None.

The workdir of a run (`jaxdl train --workdir W`) has one writer at a time: `WorkdirLock` holds
an exclusive `fcntl.flock` on `W/.jaxdl.lock` for the run (the kernel releases it on any exit,
SIGKILL included, so a lock left by a dead process never blocks) and records the holder's PID
and host in it; a second process gets `WorkdirLockedError` naming them. Files jaxdl writes under
a workdir are created with `O_NOFOLLOW` and written atomically (`write_file`); an existing
symbolic link in their place is refused (`UnsafePathError`).
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from jaxdl.errors import JaxdlError
from jaxdl.parallel.sharding import is_key, key_data_sharding

TREE, META = "tree", "meta"


class CheckpointError(JaxdlError):
    """A checkpoint cannot be written or used."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint holds another model, or other shapes or dtypes, than the one restoring it."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint directory holds links pointing outside it or names with '..'."""


class NonFiniteError(CheckpointError):
    """A tree holding NaN or inf was about to be saved."""


class CheckpointDiskFullError(CheckpointError):
    """The disk filled up while a checkpoint was written; the earlier checkpoints are intact."""


class UnsafePathError(JaxdlError):
    """A path jaxdl writes under a workdir is a symbolic link (writes never follow links)."""


class WorkdirLockedError(JaxdlError):
    """Another live process holds the workdir's lock."""


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint could not be used and was moved aside; an older one is tried (or, when none
    is left, training starts from scratch)."""


# ---- directory checks ---------------------------------------------------------------------


def check_writable_dir(path: str | os.PathLike, *, what: str = "workdir") -> Path:
    """`path` as a directory that exists (created if missing) and is writable; a clear error if
    it is a file or cannot be written."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise JaxdlError(f"{what} {str(p)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JaxdlError(f"{what} {str(p)!r} cannot be created: {e.strerror}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise JaxdlError(f"{what} {str(p)!r} is not writable")
    return p


def check_not_link(path: str | os.PathLike, *, what: str = "path") -> Path:
    """`path` as a Path; UnsafePathError if it is a symbolic link (dangling or not)."""
    p = Path(path)
    if p.is_symlink():
        raise UnsafePathError(
            f"{what} {str(p)!r} is a symbolic link (to {os.readlink(p)!r}): jaxdl writes only "
            "inside the workdir and never through links; remove the link or use another workdir"
        )
    return p


def write_file(path: str | os.PathLike, data: bytes | str, *, what: str = "output file") -> Path:
    """Write `data` to `path` atomically without following links: a temporary file created with
    O_EXCL | O_NOFOLLOW beside it, then renamed over it. A link at `path` is refused."""
    p = check_not_link(path, what=what)
    if isinstance(data, str):
        data = data.encode()
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)  # replaces a name, never follows one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def open_nofollow(path: str | os.PathLike, flags: int, *, what: str = "output file") -> int:
    """os.open with O_NOFOLLOW: an OS-level refusal (UnsafePathError) if `path` is a link."""
    p = check_not_link(path, what=what)
    try:
        return os.open(p, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            check_not_link(p, what=what)
        raise


LOCK_NAME = ".jaxdl.lock"


class WorkdirLock:
    """Exclusive lock of a workdir for one process (`fcntl.flock` on WORKDIR/.jaxdl.lock).

    `acquire()` raises WorkdirLockedError naming the holder (PID and host, read from the lock
    file) if another process holds it. The lock dies with the process (any exit, SIGKILL
    included), so a stale file from a dead process is simply taken over. `release()` empties
    the file and unlocks. A context manager."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict:
        try:
            fd = open_nofollow(self.path, os.O_RDONLY, what="workdir lock")
        except (OSError, UnsafePathError):
            return {}
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            info = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> WorkdirLock:
        if self._fd is not None:
            return self
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, what="workdir lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            h = self.holder()
            who = (
                f"process {h.get('pid', '?')} on host {h.get('host', '?')}"
                if h
                else "another process"
            )
            raise WorkdirLockedError(
                f"--workdir {str(self.workdir)!r} is in use by {who} (lock {str(self.path)!r}); "
                "one run writes a workdir at a time: wait for it to finish, stop it, or use "
                "another --workdir"
            ) from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # the finished run leaves an empty lock file
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _tree_nbytes(tree) -> int:
    return int(
        sum(np.dtype(v.dtype).itemsize * int(np.prod(np.shape(v))) for v in _leaves(tree).values())
    )


def _is_disk_full(e: BaseException) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        text = str(e)
        if "RESOURCE_EXHAUSTED" in text or "No space left on device" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def check_safe_tree(directory: str | os.PathLike) -> None:
    """Refuse a checkpoint directory that holds a name with '..' or a symbolic link whose target
    lies outside the directory (a checkpoint must not make us read or delete files elsewhere)."""
    root = Path(directory).resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if ".." in name:
                raise UnsafeCheckpointError(
                    f"checkpoint directory {str(root)!r} holds a name "
                    f"with '..': {str(p)!r}; refusing to use it"
                )
            if p.is_symlink():
                target = p.resolve()
                if target != root and root not in target.parents:
                    raise UnsafeCheckpointError(
                        f"checkpoint directory {str(root)!r} holds a symbolic link pointing "
                        f"outside it: {str(p)!r} -> {str(target)!r}; refusing to use it"
                    )


# ---- tree descriptions ----------------------------------------------------------------------


def _key_data_abstract(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """The ShapeDtypeStruct of `jax.random.key_data` of an abstract key array, its sharding
    extended over the trailing key-data dimensions (not split)."""
    data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
    sharding = key_data_sharding(getattr(x, "sharding", None), len(data.shape))
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)


def keys_as_data(tree):
    """`tree` (arrays or ShapeDtypeStructs) with every typed PRNG key leaf replaced by its raw
    key data (uint32), the form a checkpoint stores."""

    def leaf(x):
        if not is_key(x):
            return x
        if isinstance(x, jax.ShapeDtypeStruct):
            return _key_data_abstract(x)
        return jax.random.key_data(x)

    return jax.tree.map(leaf, tree)


def data_as_keys(target, tree):
    """`tree` as restored from `keys_as_data(target)`, with the leaves that are typed keys in
    `target` wrapped back into keys of the target's key dtype."""
    return jax.tree.map(
        lambda t, x: jax.random.wrap_key_data(x, dtype=t.dtype) if is_key(t) else x, target, tree
    )


def _leaves(tree) -> dict[str, Any]:
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_spec(tree) -> dict[str, list]:
    """{leaf path: [shape, dtype name]} of a tree of arrays or ShapeDtypeStructs."""
    return {k: [list(np.shape(v)), str(np.dtype(v.dtype))] for k, v in _leaves(tree).items()}


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def checksums(host_tree) -> dict[str, int]:
    """CRC-32 per leaf of a host tree (the scheme of checkpoints written before `digests`)."""
    return {k: _crc(np.asarray(v)) for k, v in _leaves(host_tree).items()}


_GOLDEN = np.uint32(0x9E3779B1)


def _words(x: jax.Array) -> jax.Array:
    """The elements' bytes as uint32 words (one per element; two for 64-bit types)."""
    import jax.numpy as jnp

    if is_key(x):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = np.dtype(x.dtype).itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _is_float(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, np.inexact)


@jax.jit
def _digest_tree(tree):
    """(digests, finite) per leaf: uint32 scalars and bools, replicated, computed on the devices."""
    import jax.numpy as jnp

    def digest(x):
        w = _words(x).reshape(-1)
        i = jax.lax.iota(jnp.uint32, w.shape[0])
        return jnp.sum(w * (i * jnp.uint32(2) + jnp.uint32(1)) * _GOLDEN, dtype=jnp.uint32)

    def finite(x):
        return jnp.all(jnp.isfinite(x)) if _is_float(x) else jnp.bool_(True)

    return jax.tree.map(digest, tree), jax.tree.map(finite, tree)


def digests(tree) -> tuple[dict[str, int], list[str]]:
    """({leaf path: digest}, [paths of floating-point leaves holding NaN or inf]) of a tree of
    arrays, on any mesh and any number of processes; only scalars reach the host."""
    import jax.numpy as jnp

    leaves = _leaves(tree)
    if not leaves:
        return {}, []
    arrays = {k: v if isinstance(v, jax.Array) else jnp.asarray(v) for k, v in leaves.items()}
    d, f = jax.device_get(_digest_tree(arrays))
    return {k: int(v) for k, v in d.items()}, [k for k, ok in f.items() if not bool(ok)]


def non_finite_leaves(host_tree) -> list[str]:
    """Paths of the floating-point leaves of a host tree holding NaN or inf."""
    bad = []
    for k, v in _leaves(host_tree).items():
        v = np.asarray(v)
        if np.issubdtype(v.dtype, np.inexact) or v.dtype.kind == "V" or "float" in str(v.dtype):
            if not np.all(np.isfinite(v.astype(np.float32))):
                bad.append(k)
    return bad


def abstract_like(tree, sharding: Callable[[Any], Any] | Any = None):
    """ShapeDtypeStructs of `tree`; `sharding` is one sharding, a function leaf -> sharding, or a
    tree of shardings; None keeps each array's own sharding."""
    if sharding is None:
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
            tree,
        )
    if callable(sharding):
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding(a)), tree
        )
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree
        )
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, sharding
    )


def describe_mismatch(saved: dict, wanted: dict, limit: int = 8) -> list[str]:
    """Human-readable differences between two tree specs."""
    out = []
    for k in sorted(set(saved) | set(wanted)):
        if k not in wanted:
            out.append(f"{k}: in the checkpoint, not in the model")
        elif k not in saved:
            out.append(f"{k}: in the model, not in the checkpoint")
        elif saved[k] != wanted[k]:
            (s_shape, s_dtype), (w_shape, w_dtype) = saved[k], wanted[k]
            out.append(f"{k}: checkpoint {s_dtype}{s_shape}, model {w_dtype}{w_shape}")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


# ---- the manager --------------------------------------------------------------------------


class Checkpoints:
    """A directory of numbered checkpoints (orbax `CheckpointManager`).

    keep: how many to keep. Without `best_metric` the newest `keep` are kept (a preservation
    policy `LatestN`); with it the `keep` best by that metric (`BestN` with `best_fn`, which orbax
    re-reads from disk after a restart, so retention stays right across restarts).
    async_save: write in a background thread; `wait()` blocks until the writes are complete."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int | None = 2,
        best_metric: str | None = None,
        best_mode: str = "min",
        async_save: bool = True,
    ):
        # checked before resolving: a linked checkpoint directory would write outside the workdir
        check_not_link(directory, what="checkpoint directory")
        self.directory = check_writable_dir(directory, what="checkpoint directory").resolve()
        check_safe_tree(self.directory)
        if best_mode not in ("min", "max"):
            raise JaxdlError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        if best_metric is not None:
            policy = ocm.BestN(
                get_metric_fn=lambda m: m[best_metric],
                reverse=best_mode == "min",
                n=keep,
                keep_checkpoints_without_metrics=False,
            )
        else:
            policy = ocm.LatestN(n=keep)
        options = ocp.CheckpointManagerOptions(
            best_fn=(lambda m: m[best_metric]) if best_metric else None,
            best_mode=best_mode,
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        # orbax logs every save at INFO; the training loop reports what matters
        logging.getLogger("absl").setLevel(logging.WARNING)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(TREE, META)
        )

    # -- queries
    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    # -- writing
    def save(
        self, step: int, tree, meta: dict | None = None, *, metrics: dict | None = None
    ) -> None:
        """Write `tree` (arrays) and `meta` (JSON) as checkpoint `step`. Raises NonFiniteError,
        writing nothing, if any floating-point leaf holds NaN or inf."""
        tree = keys_as_data(tree)
        sums, bad = digests(tree)
        if bad:
            raise NonFiniteError(
                f"refusing to save checkpoint {step} in {str(self.directory)!r}: "
                f"non-finite values in {', '.join(bad[:5])}"
            )
        # a snapshot: the asynchronous write serialises the JSON later, in another thread, and
        # callbacks keep appending to the lists their states share (History after an epoch)
        meta = copy.deepcopy({**(meta or {}), "spec": tree_spec(tree), "digests": sums})
        args = ocp.args.Composite(
            **{TREE: ocp.args.StandardSave(tree), META: ocp.args.JsonSave(meta)}
        )
        self._nbytes = _tree_nbytes(tree)
        try:
            self._manager.save(step, args=args, metrics=metrics, force=True)
        except Exception as e:
            self._raise_disk_full(e, step)
            raise

    def _raise_disk_full(self, e: BaseException, step: int | None) -> None:
        if not _is_disk_full(e):
            return
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            free = None
        kept = [s for s in self.steps() if s != step]
        raise CheckpointDiskFullError(
            "no space left on the disk while writing "
            + (f"checkpoint {step}" if step is not None else "a checkpoint")
            + f" in {str(self.directory)!r}: it needs about "
            f"{getattr(self, '_nbytes', 0):,} bytes"
            + (f", {free:,} bytes are free" if free is not None else "")
            + "; "
            + (
                f"the previous checkpoint(s) {kept} are intact and restorable"
                if kept
                else "no earlier checkpoint exists"
            )
            + ". Free some space (or use --keep-checkpoints 1) and run again to resume."
        ) from None

    def wait(self) -> None:
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            self._raise_disk_full(e, None)
            raise

    def close(self) -> None:
        self._manager.close()

    def delete(self, step: int) -> None:
        self.wait()
        self._manager.delete(step)

    def delete_all(self) -> None:
        self.wait()
        for s in self.steps():
            self._manager.delete(s)

    # -- reading
    def read_meta(self, step: int) -> dict:
        out = self._manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
        return dict(out[META])

    def restore(
        self,
        abstract_tree,
        *,
        fingerprint: dict | None = None,
        step: int | None = None,
        meta_check: Callable[[dict], None] | None = None,
    ):
        """(step, tree, meta) of the newest usable checkpoint (or of `step`), or None if there is
        none. `abstract_tree` (or a function of the checkpoint's meta returning it) gives
        structure, shapes, dtypes and target shardings; `fingerprint`
        (JSON) must equal the one saved. Unreadable or corrupted steps are moved aside with a
        CorruptCheckpointWarning and the previous one is tried."""
        self.wait()
        check_safe_tree(self.directory)
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        self._remaining = len(candidates)
        for s in candidates:
            self._remaining -= 1
            try:
                meta = self.read_meta(s)
                saved = meta["spec"]
            except Exception as e:  # unreadable metadata: a truncated or damaged write
                self._quarantine(s, f"its metadata cannot be read ({type(e).__name__}: {e})")
                continue
            if meta_check is not None:
                meta_check(meta)
            target = abstract_tree(meta) if callable(abstract_tree) else abstract_tree
            stored = keys_as_data(target)
            self._check_match(s, meta, saved, tree_spec(stored), fingerprint)
            try:
                restored = self._manager.restore(
                    s, args=ocp.args.Composite(**{TREE: ocp.args.StandardRestore(stored)})
                )[TREE]
            except Exception as e:
                self._quarantine(s, f"its arrays cannot be read ({type(e).__name__}: {e})")
                continue
            if "digests" in meta:
                recorded = meta["digests"]
                got, non_finite = digests(restored)
            else:  # written before digests: CRC-32s of whole arrays on the host
                host = jax.device_get(restored)
                recorded, got, non_finite = (
                    meta.get("checksums", {}),
                    checksums(host),
                    non_finite_leaves(host),
                )
            bad = [k for k, v in recorded.items() if got.get(k) != v]
            if bad or set(got) != set(recorded):
                self._quarantine(
                    s, f"its bytes differ from the recorded checksums ({', '.join(bad[:3])})"
                )
                continue
            if non_finite:
                self._quarantine(s, "it holds non-finite values")
                continue
            return s, data_as_keys(target, restored), meta
        if candidates:
            warnings.warn(
                f"every checkpoint in {str(self.directory)!r} ({len(candidates)}) was unusable "
                f"and moved to {str(self._corrupt_root())!r}: training starts from scratch",
                CorruptCheckpointWarning,
                stacklevel=2,
            )
        return None

    def _corrupt_root(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.corrupt"

    def _check_match(self, step, meta, saved, wanted, fingerprint):
        where = f"checkpoint {step} in {str(self.directory)!r}"
        if fingerprint is not None and meta.get("fingerprint") is not None:
            theirs = meta["fingerprint"]
            diff = [
                f"{k}: checkpoint {theirs.get(k)!r}, now {v!r}"
                for k, v in fingerprint.items()
                if theirs.get(k) != v
            ]
            if diff:
                raise CheckpointMismatchError(
                    f"{where} was written for a different model: " + "; ".join(diff)
                )
        problems = describe_mismatch(saved, wanted)
        if problems:
            raise CheckpointMismatchError(
                f"{where} does not match the model (no value is cast "
                "or reshaped): " + "; ".join(problems)
            )

    def _quarantine(self, step: int, why: str) -> None:
        src = self.path(step)
        dest_root = check_not_link(self._corrupt_root(), what="quarantine directory")
        dest_root.mkdir(exist_ok=True)
        dest = dest_root / str(step)
        n = 1
        while dest.exists():
            dest, n = dest_root / f"{step}-{n}", n + 1
        shutil.move(str(src), str(dest))
        warnings.warn(
            f"checkpoint {step} in {str(self.directory)!r} is unusable: {why}; moved "
            f"it to {str(dest)!r}"
            + ("; trying the previous one" if getattr(self, "_remaining", 0) > 0 else ""),
            CorruptCheckpointWarning,
            stacklevel=3,
        )
        self._manager.reload()


# ---- weights out of a ModelCheckpoint / BackupAndRestore directory -------------------------


def _recorded_metrics(checkpoints: Checkpoints, step: int) -> dict:
    """The metrics saved with `step`: in its JSON meta (ModelCheckpoint), or orbax's own."""
    try:
        meta = checkpoints.read_meta(step)
    except Exception:  # unreadable: restore() will quarantine it if it is chosen
        return {}
    return dict(meta.get("metrics") or checkpoints._manager.metrics(step) or {})


def restore_weights(
    directory: str | os.PathLike,
    trainer,
    *,
    step: int | None = None,
    monitor: str | None = None,
    mode: str = "min",
) -> int:
    """Load the params and model state of one checkpoint in `directory` into `trainer` (and so
    into its model) and return its step: `step`, else the best by the `monitor` metric recorded
    with each save (`mode` 'min' or 'max'), else the newest. Weights-only checkpoints
    (ModelCheckpoint(save_weights_only=True)) load into any trainer of the same model; full
    training checkpoints need the callbacks they were written with (those of the trainer's
    last `fit`). The optimizer state and step count are left as they are."""
    if mode not in ("min", "max"):
        raise JaxdlError(f"restore_weights: mode must be 'min' or 'max', got {mode!r}")
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    checkpoints = Checkpoints(path, keep=None, async_save=False)
    steps = checkpoints.steps()
    if not steps:
        raise CheckpointError(f"no checkpoint in {str(path)!r}")
    if step is None and monitor is not None:
        scored = [
            (m[monitor], s)
            for s in steps
            if (m := _recorded_metrics(checkpoints, s)).get(monitor) is not None
        ]
        if not scored:
            raise CheckpointError(f"no checkpoint in {str(path)!r} recorded {monitor!r}")
        step = (min if mode == "min" else max)(scored)[1]
    if step is not None and step not in steps:
        raise CheckpointError(f"no checkpoint {step} in {str(path)!r}; steps: {sorted(steps)}")
    state = trainer.state

    def target(meta):
        if not any(k.startswith("['state']") for k in meta["spec"]):  # weights only
            return {
                "params": abstract_like(state.params, trainer.state_shardings().params),
                "model_state": abstract_like(
                    state.model_state, trainer.state_shardings().model_state
                ),
            }
        # a full training checkpoint: the callbacks' arrays are read too (and dropped); those
        # shaped like the params (EarlyStopping's best weights, EMA) need no callback object
        params = abstract_like(state.params, trainer.state_shardings().params)
        pspec = json.loads(json.dumps(tree_spec(params)))
        trees = {}
        for k in meta.get("callback_trees", []):
            prefix = f"['callbacks'][{k!r}]"
            sub = {n[len(prefix) :]: v for n, v in meta["spec"].items() if n.startswith(prefix)}
            if sub != pspec:
                return trainer.checkpoint_abstract(meta)
            trees[k] = params
        return {**trainer.checkpoint_abstract({**meta, "callback_trees": []}), "callbacks": trees}

    found = checkpoints.restore(target, fingerprint=trainer.fingerprint, step=step)
    checkpoints.close()
    if found is None:
        raise CheckpointError(f"no usable checkpoint in {str(path)!r}")
    s, tree, _ = found
    params, model_state = (
        (tree["params"], tree["model_state"])
        if "params" in tree
        else (tree["state"].params, tree["state"].model_state)
    )
    trainer.state = state.replace(params=params, model_state=model_state)
    trainer.sync_model()
    return s


def best_checkpoint_args(callbacks, directory=None) -> tuple[Path, str | None, str]:
    """(directory, monitor, mode) for `Trainer.load_best`: those of the one ModelCheckpoint in
    `callbacks` (or of the one writing to `directory`); a `directory` no callback writes to is
    read by 'val_loss' ('min') when its checkpoints recorded it, else its newest is taken."""
    from jaxdl.train.callbacks import ModelCheckpoint

    mcs = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    if directory is not None:
        d = Path(directory).resolve()
        mcs = [c for c in mcs if c.checkpoints.directory == d]
        if not mcs:
            has = False
            if d.is_dir():
                ck = Checkpoints(d, keep=None, async_save=False)
                has = any("val_loss" in _recorded_metrics(ck, s) for s in ck.steps())
                ck.close()
            return d, "val_loss" if has else None, "min"
    if len(mcs) != 1:
        raise JaxdlError(
            f"load_best: the last fit had {len(mcs)} ModelCheckpoint callbacks; pass the "
            "directory to load from"
        )
    c = mcs[0]
    c.checkpoints.wait()
    return c.checkpoints.directory, c.monitor, c.mode
