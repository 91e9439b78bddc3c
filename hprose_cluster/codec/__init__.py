"""hprose serialization without recursion: any nesting up to ``MAX_DEPTH``, then a clear error.

hprose 1.4.3 writes and reads a value by recursion, two or three Python frames per level of
nesting, so the deepest list it writes is about 330 levels and the deepest it reads about 490;
past that it fails with a ``RecursionError`` from deep inside ``hprose.io``.  Node peers send
values 200-1,000 levels deep.  The functions here walk a value with an explicit stack instead,
so depth costs memory (a few dozen bytes a level), never Python stack, and a value nested deeper
than ``MAX_DEPTH`` fails with an ``HproseException`` that says so (a peer cannot make a server
allocate a stack of millions of levels either).

They produce and accept exactly the bytes of hprose 1.4.3 with the fixes of
``hprose_cluster.compat`` (UTF-16 string lengths); ``compat.apply()`` installs them as
``HproseWriter.serialize``, ``HproseReader.unserialize`` and ``HproseRawReader.readRaw``.  They
go through the writer's and reader's own reference tables (``refer``) and class tables, so
references, class definitions and simple mode work as before.  The one difference: values that
only exist while they are being written (the tuples of a ``dict.items()`` view) are kept alive
until the whole value is written, so a later tuple can never reuse a freed one's ``id`` and be
written as a reference to it, which 1.4.3 does now and then.

``dumps(value, simple)`` is the fast path for a whole value (results and arguments): common
scalars are formatted directly, anything else goes through a writer.  ``encode_call`` is
the same for a whole request (``C``, name, arguments, ``z``).
"""

from __future__ import annotations

from .base import MAX_DEPTH, read_string, string_bytes, utf16_length, write_string
from .reader import MISS, read_raw, read_value, scalar_result
from .request import encode_call
from .writer import dumps, write_value

__all__ = ["MAX_DEPTH", "utf16_length", "write_string", "read_string", "write_value",
           "read_value", "read_raw", "dumps", "string_bytes", "scalar_result", "MISS",
           "encode_call"]
