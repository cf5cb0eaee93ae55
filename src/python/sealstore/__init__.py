"""sealstore: share large immutable values between processes on one host.

Processes attach to one shared-memory segment. ``put`` copies a value in and
seals it under a ``RemoteRef``; ``fetch`` pins it and returns a ``View``
whose bytes ``np.asarray(view)`` reads where they lie, read-only, without a
copy; ``materialize`` makes one private, writable copy.

    import numpy as np, sealstore
    s = sealstore.Store.create("demo", capacity=1 << 30)
    ref = s.put(np.arange(1e6).reshape(1000, 1000))
    a = np.asarray(s.fetch(ref))        # the pin lives as long as `a` does

Every error is a ``sealstore.Error``: one subclass per code (``NotFound``,
``AlreadySealed``, ``Timeout``, ...), with the message naming what failed.
"""

from ._sealstore import (
    AlreadyExists,
    AlreadySealed,
    Corrupt,
    Error,
    IncompatibleSegment,
    InvalidArgument,
    NotFound,
    NotSealed,
    ObjectInfo,
    OutOfMemory,
    PermissionDenied,
    ProcessInfo,
    RemoteRef,
    SealEvent,
    SegmentInfo,
    SegmentMissing,
    Store,
    Subscription,
    Timeout,
    TypeMismatch,
    View,
    WorkerFailed,
    Writer,
)

__all__ = [
    "AlreadyExists",
    "AlreadySealed",
    "Corrupt",
    "Error",
    "IncompatibleSegment",
    "InvalidArgument",
    "NotFound",
    "NotSealed",
    "ObjectInfo",
    "OutOfMemory",
    "PermissionDenied",
    "ProcessInfo",
    "RemoteRef",
    "SealEvent",
    "SegmentInfo",
    "SegmentMissing",
    "Store",
    "Subscription",
    "Timeout",
    "TypeMismatch",
    "View",
    "WorkerFailed",
    "Writer",
]
